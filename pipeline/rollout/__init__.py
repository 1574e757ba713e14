"""Around the loop: the rollout of the promoted student behind the team's gateway (``duo rollout``).

``gateway`` writes the gateway's files (LiteLLM proxy yaml and its capture hook, or Portkey's config) for
a student weight; ``checks`` holds what ``duo validate`` says about the ``rollout:`` keys.
"""
