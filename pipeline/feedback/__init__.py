"""People's labels of a round's answers: the report PR's review block, ``/duo label`` comments and
labels imported from an annotation tool (``duo feedback``, docs/feedback.md)."""
