"""duo: an LLMOps pipeline that migrates a task from a service LLM to a small local model (LlamaDuo)."""

__version__ = "0.1.0"
