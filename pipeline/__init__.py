"""duo: an LLMOps pipeline that migrates a task from a service LLM to a small local model (LlamaDuo)."""

import logging

__version__ = "0.1.0"

# bitsandbytes warns on every import, on CPUs with AVX512-BF16, that an optional kernel package
# is missing; duo quantizes only on CUDA, so the line says nothing to a duo user
# (its errors still show).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
