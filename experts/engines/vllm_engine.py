"""vLLM's offline `LLM` in-process (CUDA): one load per expert, continuous batching inside vLLM.

Needs the `vllm` extra (`pip install 'switchyard[vllm]'`); without it, loading fails with a
clear message instead of an ImportError. Not exercised by this project's tests, which run
without a GPU: the code path follows vLLM's documented offline API (LLM, SamplingParams,
LLM.generate over token-id prompts, RequestOutput).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from experts.engines.base import completion, model_loads, prepare
from experts.errors import UpstreamError, UpstreamUnavailable
from experts.spec import ExpertSpec

MISSING = "backend 'vllm' needs vLLM, which is not installed: pip install 'switchyard[vllm]' (Linux with CUDA)"


class VLLMEngine:
    def __init__(self, spec: ExpertSpec) -> None:
        try:
            from vllm import LLM, SamplingParams  # noqa: PLC0415 - optional extra
        except ImportError:
            raise UpstreamUnavailable(spec.name, MISSING) from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.params = SamplingParams
        self.llm = LLM(model=spec.model, **spec.engine_options)
        model_loads[spec.name] += 1
        self.tokenizer = self.llm.get_tokenizer()
        try:
            self.context: int | None = int(self.llm.llm_engine.model_config.max_model_len)
        except AttributeError:  # layout differs between vLLM versions; vLLM still checks itself
            self.context = None

    def generate(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any] | UpstreamError]:
        results, runnable = prepare(self.spec, self.tokenizer, bodies, self.context)
        rows = [i for i, _, _ in runnable]
        # token ids, not text: vLLM would add special tokens to a templated prompt a second time
        prompts = [{"prompt_token_ids": ids} for _, _, ids in runnable]
        params = [self.params(n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                              stop=list(s.stop) or None, seed=s.seed) for _, s, _ in runnable]
        if rows:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)  # one call: vLLM schedules them together
            for i, out in zip(rows, outputs):
                choices = [(o.text, len(o.token_ids), o.finish_reason or "stop") for o in out.outputs]
                results[i] = completion(self.spec, len(out.prompt_token_ids or ()), choices)
        return results

    def close(self) -> None:
        self.llm = None  # vLLM frees the GPU memory when the engine is collected
