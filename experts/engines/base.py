"""What every in-process engine shares: the OpenAI body's sampling fields, the prompt text
(the tokenizer's chat template, else a plain role-prefixed join), the chat.completion reply,
and a count of model loads (batch jobs promise one load per expert used, not one per prompt).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from experts.errors import UpstreamError
from experts.spec import ExpertSpec

DEFAULT_MAX_TOKENS = 256  # engines have no server default; OpenAI's is "up to the context"

# Fields an engine cannot honour: a request that sets them fails rather than being half-served.
_UNSUPPORTED = ("tools", "functions", "response_format", "logprobs", "top_logprobs", "logit_bias")

# Model loads per expert name, counted where the weights are read (tests and the CLI read it).
model_loads: Counter[str] = Counter()


class Engine(Protocol):
    def generate(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any] | UpstreamError]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Sampling:
    """One request's generation settings; requests with equal settings share a generate call."""

    max_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: tuple[str, ...]
    seed: int | None

    @classmethod
    def from_body(cls, expert: ExpertSpec, body: dict[str, Any]) -> Sampling:
        def bad(message: str) -> UpstreamError:
            return UpstreamError(expert.name, message, status=400)

        if unsupported := [k for k in _UNSUPPORTED if body.get(k)]:
            raise bad(f"backend {expert.backend!r} does not support {', '.join(unsupported)}")
        max_tokens = next((body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), DEFAULT_MAX_TOKENS)
        temperature = body.get("temperature", 1.0)
        top_p = body.get("top_p", 1.0)
        n = body.get("n", 1)
        seed = body.get("seed")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else stop
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise bad("max_tokens must be a positive integer")
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise bad("temperature must be a number in [0, 2]")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise bad("top_p must be a number in (0, 1]")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
            raise bad("n must be an integer in [1, 16]")
        if seed is not None and not isinstance(seed, int):
            raise bad("seed must be an integer")
        if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
            raise bad("stop must be a string or a list of strings")
        return cls(max_tokens, float(temperature), float(top_p), n, tuple(stop), seed)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return str(content or "")


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """The prompt text and whether it came from a chat template (which already holds any BOS,
    so the caller must not add special tokens again)."""
    plain = [{"role": m.get("role", "user"), "content": _text(m.get("content"))} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True), True
    return "".join(f"{m['role']}: {m['content']}\n" for m in plain) + "assistant:", False


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string (OpenAI leaves the stop string out)."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def completion(expert: ExpertSpec, prompt_tokens: int, choices: Sequence[tuple[str, int, str]]) -> dict[str, Any]:
    """An OpenAI chat.completion from (text, completion tokens, finish reason) per choice."""
    completion_tokens = sum(c[1] for c in choices)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": expert.upstream_model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            for i, (text, _, finish) in enumerate(choices)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def prepare(expert: ExpertSpec, tokenizer: Any, bodies: Sequence[dict[str, Any]], context: int | None
            ) -> tuple[list[Any], list[tuple[int, Sampling, list[int]]]]:
    """Per-body results prefilled with each invalid body's error, and the runnable rest as
    (position, sampling, prompt token ids)."""
    results: list[Any] = [None] * len(bodies)
    runnable = []
    for i, body in enumerate(bodies):
        try:
            sampling = Sampling.from_body(expert, body)
        except UpstreamError as exc:
            results[i] = exc
            continue
        text, templated = render_prompt(tokenizer, body.get("messages") or [])
        ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
        if err := too_long(expert, len(ids), sampling.max_tokens, context):
            results[i] = err
            continue
        runnable.append((i, sampling, ids))
    return results, runnable


def too_long(expert: ExpertSpec, prompt_tokens: int, max_tokens: int, context: int | None) -> UpstreamError | None:
    limit = min(c for c in (context, expert.context_window) if c) if (context or expert.context_window) else None
    if limit is not None and prompt_tokens + max_tokens > limit:
        return UpstreamError(expert.name, f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the context "
                             f"window ({limit} tokens)", status=400)
    return None
