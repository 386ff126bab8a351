"""A transformers causal LM in-process (CPU by default): one load, batched generation.

Requests with the same sampling settings share one left-padded `generate` call; the reply
stops at the tokenizer's EOS (finish_reason "stop") or at max_tokens ("length").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from experts.engines.base import Sampling, completion, cut_at_stop, model_loads, prepare
from experts.errors import UpstreamError
from experts.spec import ExpertSpec


class TransformersEngine:
    def __init__(self, spec: ExpertSpec) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a batch job loads what is on disk; no surprise downloads
        import torch  # noqa: PLC0415 - heavy imports only when an engine expert is used
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # the batch job's own bar is the one to watch
        self.spec = spec
        self.torch = torch
        assert spec.model is not None  # ExpertSpec validates it for engine backends
        self.tokenizer = AutoTokenizer.from_pretrained(spec.model)
        self.model = AutoModelForCausalLM.from_pretrained(spec.model, **spec.engine_options).eval()
        model_loads[spec.name] += 1
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left so generation continues the prompt
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos = self.tokenizer.eos_token_id
        self.context = getattr(self.model.config, "max_position_embeddings", None)

    def generate(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any] | UpstreamError]:
        results, runnable = prepare(self.spec, self.tokenizer, bodies, self.context)
        groups: dict[Sampling, list[tuple[int, list[int]]]] = {}
        for i, sampling, ids in runnable:
            groups.setdefault(sampling, []).append((i, ids))
        for sampling, rows in groups.items():
            for (i, ids), reply in zip(rows, self._run(sampling, [ids for _, ids in rows])):
                results[i] = completion(self.spec, len(ids), reply)
        return results

    def _run(self, s: Sampling, prompts: list[list[int]]) -> list[list[tuple[str, int, str]]]:
        torch = self.torch
        batch = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
        kwargs: dict[str, Any] = {"max_new_tokens": s.max_tokens, "num_return_sequences": s.n,
                                  "pad_token_id": self.tokenizer.pad_token_id, "eos_token_id": self.eos}
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False)
        if s.seed is not None:
            torch.manual_seed(s.seed)  # one seed per generate call: requests sharing it share the stream
        with torch.inference_mode():
            out = self.model.generate(**batch, **kwargs)
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        replies = []
        for p in range(len(prompts)):
            choices = []
            for seq in new[p * s.n : (p + 1) * s.n]:
                ended = self.eos in seq
                seq = seq[: seq.index(self.eos)] if ended else seq
                text, stopped = cut_at_stop(self.tokenizer.decode(seq, skip_special_tokens=True), s.stop)
                tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if stopped else len(seq)
                choices.append((text, tokens, "stop" if ended or stopped else "length"))
            replies.append(choices)
        return replies

    def close(self) -> None:
        self.model = None  # drop the weights before the next expert's group loads
