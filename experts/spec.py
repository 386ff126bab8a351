"""An expert: one upstream model behind an OpenAI-compatible endpoint (or, for batch jobs, an
in-process engine loading the model itself), with its prices."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


# Backends that load the model in-process (batch jobs); the others are reached over HTTP.
ENGINE_BACKENDS = ("transformers", "vllm")


class ExpertSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:\-]*$")
    backend: Literal["openai", "replay", "transformers", "vllm"] = "openai"
    base_url: str = Field(default="", description="OpenAI-compatible base URL, e.g. http://vllm:8000/v1")
    replay_data: str | None = Field(default=None, description="backend replay: the routing dataset whose recorded responses it answers with")
    model: str | None = Field(default=None, description="model id upstream; defaults to name. Engines: the model folder or hub id")
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="engines: keyword arguments for the loader (vLLM's LLM(...), transformers' from_pretrained)")
    api_key_env: str | None = Field(default=None, description="environment variable holding the upstream API key")
    input_price: float = Field(default=0.0, ge=0, description="USD per million input tokens")
    output_price: float = Field(default=0.0, ge=0, description="USD per million output tokens")
    context_window: int | None = Field(default=None, gt=0)
    max_concurrency: int = Field(default=64, gt=0, description="requests in flight; engines: the generation batch size")
    skills: list[str] = Field(default_factory=list)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    stands_for: str | None = Field(default=None, description="the model of the routers' training data this expert stands for; defaults to name")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _backend(self) -> ExpertSpec:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("base_url is required for backend 'openai'")
        if self.backend in ENGINE_BACKENDS and not self.model:
            raise ValueError(f"backend {self.backend!r} needs model (the model folder or hub id to load)")
        if self.backend == "replay":
            if not self.replay_data:
                raise ValueError("backend 'replay' needs replay_data (a routing dataset with responses)")
            if "replay" not in self.name.lower():
                raise ValueError("a replay expert's name must contain 'replay', so no one mistakes it for a model")
        return self

    @property
    def upstream_model(self) -> str:
        return self.model or self.name

    @property
    def profile(self) -> str:
        return self.stands_for or self.name

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1e6
