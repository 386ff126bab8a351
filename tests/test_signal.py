"""evaluation/signal.py: the per-prompt-signal diagnostic's building blocks."""

from __future__ import annotations

import numpy as np

from evaluation.signal import _finite, probe_auc, question


def test_question_is_the_last_block_of_a_few_shot_prompt() -> None:
    assert question("Q: 1+1?\nA: 2\n\nQ: 2+2?\nA: 4\n\nQ: 3+3?\nA:") == "Q: 3+3?\nA:"
    assert question("no blocks here") == "no blocks here"
    assert question("trailing\n\n\n\n") == "trailing"


def test_probe_finds_signal_only_where_there_is_some() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    informative = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    noise = rng.integers(0, 2, size=400)
    assert probe_auc(x, informative) > 0.9
    assert abs(probe_auc(x, noise) - 0.5) < 0.1
    assert np.isnan(probe_auc(x, np.ones(400, dtype=int)))  # one class: no AUC


def test_results_are_valid_json() -> None:
    import json

    text = json.dumps(_finite({"a": float("nan"), "b": {"c": 0.5, "d": float("inf")}}), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": {"c": 0.5, "d": None}}
