"""The statistics behind a verdict and the decision: paired CIs, summaries,
metrics, the budget. No I/O beyond the store reads they are handed."""
