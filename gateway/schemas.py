"""Request bodies at the HTTP boundary. Unknown chat fields pass through to the expert."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import GatewayError


class RoutingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router: str | None = None
    cost_weight: float | None = Field(default=None, ge=0.0, le=1.0, description="0 = best quality, 1 = cheapest")
    k: int = Field(default=1, ge=1, le=16, description="experts to recruit")
    experts: list[str] | None = Field(default=None, description="allow-list of expert names")
    max_cost_usd: float | None = Field(default=None, ge=0.0, description="drop experts predicted to cost more")
    aggregate: Literal["synthesize", "vote", "best"] | None = Field(default=None, description="k > 1: how answers combine")
    aggregator: str | None = Field(default=None, description="k > 1 with synthesize: the expert that writes the final answer")
    min_successful: int = Field(default=1, ge=1, description="k > 1: answer when at least this many experts did")

    @model_validator(mode="after")
    def _fits_k(self) -> RoutingOptions:
        if self.min_successful > self.k:
            raise ValueError(f"min_successful ({self.min_successful}) must not exceed k ({self.k})")
        return self


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "function", "developer"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(default="auto", min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    routing: RoutingOptions | None = None

    @field_validator("model")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    def upstream_body(self) -> dict[str, Any]:
        """What the expert receives: the client's body minus the gateway's own fields."""
        return self.model_dump(exclude={"routing", "model"}, exclude_none=True)

    def max_tokens(self) -> int | None:
        value = (self.model_extra or {}).get("max_completion_tokens") or (self.model_extra or {}).get("max_tokens")
        return value if isinstance(value, int) and value > 0 else None

    def query_text(self) -> str:
        """The text routed on: the last user message (what the client is asking now)."""
        for m in reversed(self.messages):
            if m.role == "user":
                return _content_text(m.content)
        return _content_text(self.messages[-1].content)


class RouteRequest(ChatCompletionRequest):
    """Body of /v1/route: a chat request, or just a `prompt`."""

    messages: list[Message] = Field(default_factory=list)
    prompt: str | None = None

    def query_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        if not self.messages:
            raise GatewayError(400, "messages or prompt is required", "messages", "invalid_request")
        return super().query_text()


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")
    return content or ""


def parse_body(raw: bytes, model: type[BaseModel]) -> Any:
    """JSON bytes -> validated model, or a 400 naming the offending field."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc}", None, "invalid_json") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "request body must be a JSON object", None, "invalid_request")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise GatewayError(400, f"{loc}: {first['msg']}", loc or None, "invalid_request") from None
