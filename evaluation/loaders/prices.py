"""Token-estimated costs for routing data that carries prices, or no costs at all.

Cost of one response, in USD:

    (prompt_tokens * input_price + output_tokens(task) * output_price) / 1e6

with prices in USD per million tokens.

- prompt_tokens: `estimate_tokens`, ceil(ASCII characters / 4) + one token per non-ASCII
  character. Four characters a token is the usual rule of thumb for English BPE vocabularies;
  CJK text (cmmlu, ceval) runs near one token a character, so counting it at /4 would make
  Chinese prompts look four times too cheap. No tokenizer dependency, and deterministic.
- output_tokens: a typical answer length per task (`OUTPUT_TOKENS`), else 256. Grounded in
  the RouterBench responses (arXiv 2403.12031): multiple-choice answers are 1-2 tokens (we
  take 8, room for "The answer is (B)"), MBPP code answers 135-315 tokens (mean about 220;
  we take 256 for code). Math word problems and logic puzzles are answered with a chain of
  thought (gsm8k/MATH reference solutions are 70-150 tokens; models write more): 256.
  Short-answer QA (natural_qa, trivia_qa): 16. CommonGen (one sentence): 32.
- Default prices (`default_price`) for sources without any: $0.20 per million input and
  output tokens for a 7B-class model, scaled by parameter count (8B -> 0.20 * 8 / 7), the
  rate open 7-8B models are served at (LLMRouter's default_llm.json lists 0.20 for them).
  Used only by the RouterDC loader; a `prices` file overrides it.

A prices file is JSON `{model: {"input_price": x, "output_price": y}}` (USD per million
tokens); other keys are ignored, so LLMRouter's default_llm.json is itself a prices file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.loaders.errors import DatasetError
from routers.tokens import DEFAULT_OUTPUT_TOKENS, OUTPUT_TOKENS, estimate_tokens, output_tokens  # noqa: F401 - re-exported

PRICE_PER_7B = 0.20  # USD per million tokens, input and output alike

# Parameter counts (billions) of the RouterDC models; other names fall back to a "-7b"-style
# size in the name.
MODEL_SIZES_B: dict[str, float] = {
    "mistralai/Mistral-7B-v0.1": 7,
    "meta-math/MetaMath-Mistral-7B": 7,
    "itpossible/Chinese-Mistral-7B-v0.1": 7,
    "HuggingFaceH4/zephyr-7b-beta": 7,
    "cognitivecomputations/dolphin-2.6-mistral-7b": 7,
    "meta-llama/Meta-Llama-3-8B": 8,
    "cognitivecomputations/dolphin-2.9-llama3-8b": 8,
}
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens


def default_price(model: str) -> Price | None:
    """The size-scaled default price, or None when the model's size is unknown."""
    size = MODEL_SIZES_B.get(model)
    if size is None:
        found = _SIZE_IN_NAME.findall(model.split("/")[-1])
        if not found:
            return None
        size = float(found[-1])
    per_million = PRICE_PER_7B * size / 7
    return Price(per_million, per_million)


def read_prices(path: str | Path) -> dict[str, Price]:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read prices: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected an object {{model: {{input_price, output_price}}}}")
    prices = {}
    for model, entry in raw.items():
        values = []
        for key in ("input_price", "output_price"):
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise DatasetError(f"{path}: model {model!r}: field {key!r}: expected a non-negative number (USD per million tokens)")
            values.append(float(value))
        prices[model] = Price(*values)
    return prices


def estimated_costs(prompts: list[str], tasks: list[str], models: list[str], prices: dict[str, Price]) -> np.ndarray:
    """[N x M] USD: every model is charged for the same prompt and the task's typical answer."""
    tokens_in = np.array([estimate_tokens(p) for p in prompts], dtype=np.float64)
    tokens_out = np.array([output_tokens(t) for t in tasks], dtype=np.float64)
    price_in = np.array([prices[m].input for m in models], dtype=np.float64)
    price_out = np.array([prices[m].output for m in models], dtype=np.float64)
    return ((np.outer(tokens_in, price_in) + np.outer(tokens_out, price_out)) / 1e6).astype(np.float32)
