"""The LLM judge: absolute scores, pairwise verdicts, a panel of judges, and the round's judging."""
