"""In-process engines for batch jobs: transformers (CPU) and vLLM's offline LLM (CUDA, optional extra)."""
