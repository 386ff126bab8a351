"""Token counts without a tokenizer: what prices turn into dollars.

ceil(ASCII characters / 4) + one token per non-ASCII character. Four characters a token is the
usual rule of thumb for English BPE vocabularies; CJK text runs near one token a character,
so counting it at /4 would make Chinese prompts look four times too cheap. Deterministic and
dependency-free, so the loaders and the gateway's pricing agree.

Output lengths: a recorded response's own count when the data has responses; otherwise a
typical answer length per task (`OUTPUT_TOKENS`, grounded in RouterBench's responses: see
evaluation/loaders/prices.py), else 256.
"""

from __future__ import annotations

import math

import numpy as np

CHARS_PER_TOKEN = 4
DEFAULT_OUTPUT_TOKENS = 256


def estimate_tokens(text: str) -> int:
    ascii_chars = len(text.encode("ascii", "ignore"))
    return max(1, math.ceil(ascii_chars / CHARS_PER_TOKEN) + (len(text) - ascii_chars))


_MULTIPLE_CHOICE = ("mmlu", "cmmlu", "ceval", "arc_challenge", "arc_easy", "commonsense_qa", "openbook_qa", "gpqa",
                    "winogrande", "hellaswag")
_MATH = ("gsm8k", "math", "math_prealgebra", "agentverse_mgsm", "agentverse_logicgrid")
_CODE = ("mbpp", "humaneval", "human_eval", "javascript")
OUTPUT_TOKENS: dict[str, int] = {
    **{t: 8 for t in _MULTIPLE_CHOICE},
    **{t: 256 for t in _MATH},
    **{t: 256 for t in _CODE},
    "natural_qa": 16,
    "trivia_qa": 16,
    "commongen": 32,
}


def output_tokens(task: str) -> int:
    # RouterBench writes "arc-challenge", RouterDC "arc_challenge", "MATH_prealgebra": one key each.
    key = task.split(".")[0].strip().lower().replace("-", "_")
    return OUTPUT_TOKENS.get(key, DEFAULT_OUTPUT_TOKENS)


def output_token_matrix(tasks: list[str], responses: list[list[str | None]] | None, models: int) -> np.ndarray:
    """[N, M] completion tokens per (prompt, model): the recorded response's count where there
    is one, else the task's typical length."""
    typical = np.array([output_tokens(t) for t in tasks], dtype=np.float32)
    out = np.repeat(typical[:, None], models, axis=1)
    if responses is not None:
        for i, row in enumerate(responses):
            for m, text in enumerate(row):
                if text is not None:
                    out[i, m] = estimate_tokens(text)
    return out
