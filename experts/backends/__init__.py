"""Upstream backends. `openai_http` speaks the OpenAI protocol to vLLM and any compatible server."""
