"""The student model: loading, generation, the SFT recipe and multi-process launch (torch lives here)."""
