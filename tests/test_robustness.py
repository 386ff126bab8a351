"""The robustness suite: prompt set, perturbations, confounder gadgets, the prefix defence,
and one small end-to-end run that writes its files. Uses the session's carrot router trained
on the RouterBench slice and the real embedding model."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evaluation.robustness.gadgets import Objective, apply_gadget, gadget_vocab, random_gadget, search_gadget
from evaluation.robustness.perturb import PERTURBATIONS, perturb, perturb_all
from evaluation.robustness.suite import (CATEGORIES, PROMPTS, _Memo, expert_reference, load_prompts, perturbation_study,
                                         run_robustness)
from routers.artifacts import load_router
from routers.base import decide
from routers.defence import PrefixDefence, pick

COST_WEIGHT = 0.1


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return load_prompts()


@pytest.fixture(scope="module")
def router(carrot_artifact: Path):
    return load_router(carrot_artifact)


@pytest.fixture(scope="module")
def memo(embedder):
    return _Memo(embedder)


# -- the prompt set ------------------------------------------------------------------------


def test_prompt_set_is_categorized_balanced_and_unique(rows) -> None:
    assert {r["category"] for r in rows} == set(CATEGORIES)
    per = Counter((r["category"], r["difficulty"]) for r in rows)
    for c in CATEGORIES:
        n = per[(c, "simple")] + per[(c, "hard")]
        assert n >= 40, c
        assert per[(c, "simple")] >= 0.4 * n and per[(c, "hard")] >= 0.4 * n, c  # roughly half and half
    assert {r["difficulty"] for r in rows} == {"simple", "hard"}
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert all(r["prompt"].strip() == r["prompt"] and len(r["prompt"]) > 5 for r in rows)
    lines = PROMPTS.read_text().splitlines()
    assert all(set(json.loads(line)) == {"id", "category", "difficulty", "prompt"} for line in lines)
    # hard prompts are longer on the whole than simple ones
    mean_len = {d: np.mean([len(r["prompt"].split()) for r in rows if r["difficulty"] == d]) for d in ("simple", "hard")}
    assert mean_len["hard"] > 2 * mean_len["simple"]


# -- perturbations -------------------------------------------------------------------------


def _norm(s: str) -> str:
    return " ".join(s.split())


def test_perturbations_are_deterministic_and_meaning_preserving(rows) -> None:
    texts = [r["prompt"] for r in rows]
    for kind in PERTURBATIONS:
        a, b = perturb_all(texts, kind, seed=3), perturb_all(texts, kind, seed=3)
        assert a == b, kind
        assert perturb_all(texts[::-1], kind, seed=3) == a[::-1], kind  # per-prompt draws, order-free
        if kind != "identity":
            assert sum(x != t for x, t in zip(a, texts)) >= 0.9 * len(texts), kind
    assert perturb_all(texts, "paraphrase", 1) != perturb_all(texts, "paraphrase", 2)
    for t in texts:
        assert perturb(t, "identity") == t
        assert perturb(t, "casing").lower() == t.lower()
        for kind in ("paraphrase", "prefix", "politeness", "language"):
            assert t in perturb(t, kind), (kind, t)
        padded = perturb(t, "padding")  # whitespace inside and around, filler at the end
        assert _norm(padded).startswith(_norm(t)) and set(padded) - set(t) <= set(" \t\n.")
        # typos: same words in the same places, at most 3 changed, each by one inner edit
        words, typo = t.split(" "), perturb(t, "typos").split(" ")
        assert len(words) == len(typo)
        changed = [(w, v) for w, v in zip(words, typo) if w != v]
        assert 1 <= len(changed) <= 3 or not re.search(r"[A-Za-z]{4,}", t)
        for w, v in changed:
            assert abs(len(w) - len(v)) <= 2 and w[0] == v[0] and w[-1] == v[-1]
    with pytest.raises(ValueError):
        perturb("x", "nope")


def test_identity_flip_rate_is_zero_and_perturbations_are_measured(router, memo, rows) -> None:
    sub = rows[::8]
    texts = [r["prompt"] for r in sub]
    emb = memo(texts)
    refs = {"carrot": expert_reference(router, emb)}
    out = perturbation_study({"carrot": router}, refs, memo, texts, emb, COST_WEIGHT, ["identity", "paraphrase"], 0, print)
    assert out["carrot"]["identity"]["flip_rate"] == 0.0
    assert out["carrot"]["identity"]["cost_change"] == 0.0
    assert 0.0 <= out["carrot"]["paraphrase"]["flip_rate"] <= 1.0
    # the vectorised pick is routers.base.decide's
    est = router.predict(emb)
    picks = pick(est.quality, est.cost, COST_WEIGHT, router.cost_ref)
    assert [decide(q, c, COST_WEIGHT, router.cost_ref).chosen[0] for q, c in zip(est.quality, est.cost)] == picks.tolist()


# -- gadgets and the defence ---------------------------------------------------------------


@pytest.fixture(scope="module")
def gadget(router, embedder, memo, rows):
    """A small white-box search on 8 simple prompts (one per category)."""
    search = [next(r["prompt"] for r in rows if r["category"] == c and r["difficulty"] == "simple") for c in CATEGORIES]
    ref = expert_reference(router, memo([r["prompt"] for r in rows]))
    objective = Objective(router, COST_WEIGHT, ref.mean_cost)
    vocab = gadget_vocab(embedder._model.tokenizer)
    result = search_gadget(objective, embedder.encode, search, vocab, n_tokens=8, iterations=8, batch=8, seed=0)
    return result, ref, set(search)


def test_gadget_search_raises_its_objective(gadget, embedder) -> None:
    result, ref, _ = gadget
    assert result.objective > result.objective_start  # greedy search accepted something
    assert result.objective > result.objective_empty + 0.1  # and beats no prefix with margin
    assert result.history == sorted(result.history)  # never gets worse
    assert len(result.words) == 8 and result.gadget == " ".join(result.words)
    assert len(gadget_vocab(embedder._model.tokenizer, max_id=5000)) < len(gadget_vocab(embedder._model.tokenizer)) / 5
    assert apply_gadget("g h", ["q"]) == ["g h q"] and apply_gadget("g", ["q"], "suffix") == ["q g"]


def test_defence_flags_gadget_prefixes_and_few_clean_prompts(gadget, router, memo, rows, embedder) -> None:
    result, ref, search = gadget
    defence = PrefixDefence(tokenizer=embedder._model.tokenizer)
    held = [r["prompt"] for r in rows if r["prompt"] not in search]
    clean_picks = pick(*(lambda e: (e.quality, e.cost))(router.predict(memo(held))), COST_WEIGHT, router.cost_ref)
    adv = apply_gadget(result.gadget, held)
    check = defence.check_batch(router, adv, memo, COST_WEIGHT)
    upgraded = ref.mean_cost[check.chosen_full] > ref.mean_cost[clean_picks]
    assert upgraded.mean() > 0.2  # the gadget works on held-out prompts
    assert check.flagged[upgraded].mean() >= 0.7  # measured 0.84-0.88 over search seeds 0-2
    defended = ref.mean_cost[check.chosen_routed] > ref.mean_cost[clean_picks]
    assert defended.mean() < 0.5 * upgraded.mean()
    # a random-words prefix also reads as an anomaly, but the clean prompts rarely do
    clean = defence.check_batch(router, [r["prompt"] for r in rows], memo, COST_WEIGHT)
    assert clean.flagged.mean() <= 0.12  # measured 0.065 (0.02-0.04 on routers trained on all of RouterBench)
    assert not clean.flagged[~clean.checked].any()
    # the single-request API agrees with the batch one
    for i in np.flatnonzero(check.flagged)[:2].tolist() + np.flatnonzero(~check.flagged)[:2].tolist():
        one = defence.check(router, adv[i], memo, COST_WEIGHT)
        assert one.flagged == bool(check.flagged[i]) and one.chosen_full == check.chosen_full[i]
        if one.flagged:
            assert one.route_text == check.cores[i] and held[i].endswith(one.route_text) and one.route_embedding is not None
            assert "prefix upgrade" in one.reason
    short = defence.check(router, "What is 17 + 25?", memo, COST_WEIGHT)
    assert not short.flagged and short.core_text is None and short.route_text == "What is 17 + 25?"
    assert defence.split(f"{random_gadget(gadget_vocab(embedder._model.tokenizer), 10)} What is the capital of France?")[1] \
        == "What is the capital of France?"


# -- the suite -----------------------------------------------------------------------------


def test_suite_writes_results_report_and_plots(router, embedder, bench_slice, rows, tmp_path) -> None:
    sub = [r for c in CATEGORIES for d in ("simple", "hard") for r in [x for x in rows if x["category"] == c and x["difficulty"] == d][:2]]
    logs: list[str] = []
    res = run_robustness({"carrot": router, "carrot2": router}, embedder, tmp_path / "out", seed=1, log=logs.append,
                         data=bench_slice, prompts=sub, perturbations=["identity", "casing"], gadget_iterations=2,
                         gadget_batch=4, gadget_queries_per_category=1, common_words_gadget=False, routerbench_sample=12)
    out = tmp_path / "out"
    for name in ("results.json", "report.md", "categories_most_expensive.png", "perturbation_flip_rate.png",
                 "gadget_upgrade_rate.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["prompts"] == len(sub) == 32
    assert saved["experts"]["carrot"]["most_expensive"] == "gpt-4-1106-preview"
    assert saved["experts"]["carrot"]["source"] == "routing data (train split)"
    assert saved["perturbations"]["carrot"]["identity"]["flip_rate"] == 0.0
    cat = saved["categories"]["carrot"]["0.1"]
    assert set(cat["categories"]) == set(CATEGORIES) and 0.0 <= cat["over_routing"] <= 1.0
    g = saved["gadgets"][0]
    assert g["eval"]["carrot"]["setting"] == "white-box" and g["eval"]["carrot2"]["setting"] == "transfer"
    assert g["eval"]["carrot"]["held_out"]["n"] == 32 - 8
    assert g["eval"]["carrot"]["held_out"] == g["eval"]["carrot2"]["held_out"]  # same router, same numbers
    assert "quality_with_defence" in saved["defence_clean"]["carrot"]["routerbench_test"]
    held = g["eval"]["carrot"]["held_out"]  # the gateway's per-request call agrees with the batch check
    assert held["gateway_agrees_with_batch"] == 1.0 and held["flagged_gateway"] == held["flagged"]
    assert saved["defence_clean"]["carrot"]["prompt_set"]["false_positive_rate_gateway"] == \
        saved["defence_clean"]["carrot"]["prompt_set"]["false_positive_rate"]
    report = (out / "report.md").read_text()
    assert "| router |" in report and "over-routing" in report and "Confounder gadgets" in report
    assert "as the gateway runs it" in report
    clean = report.split("## 4. Defence on clean prompts")[1].split("### The defence as the gateway runs it")[0]
    assert "| carrot | prompt_set |" in clean and "| carrot | routerbench_test |" in clean  # its own rows, not the gateway's
    assert res["seconds"] > 0 and any("| router |" in line for line in logs)
