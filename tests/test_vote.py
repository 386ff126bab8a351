from __future__ import annotations

from pathlib import Path

from evaluation.loaders import load_dataset
from evaluation.vote import gold_choices, vote_eval, write_vote_report
from experts.aggregation import extract_choice, extract_number, majority
from routers.artifacts import load_router
from routers.embedder import embed_cached


def test_extraction_and_majority() -> None:
    assert [extract_choice(t) for t in ["['A\\n']", "['B)']", "The answer is (C).", "D", "", None]] == ["A", "B", "C", "D", None, None]
    assert extract_number("so 12 + 30 = 42.50") == "42.5" and extract_number("1,024 apples") == "1024" and extract_number("none") is None
    assert majority(["A", "B", "B", None]) == 1
    assert majority(["A", "B"]) == 0  # a tie goes to the better-ranked expert
    assert majority([None, None]) is None


def test_vote_on_recorded_answers(bench_slice: Path, carrot_artifact: Path, embedder, tmp_path: Path) -> None:
    test = load_dataset(bench_slice).split("test")
    gold = gold_choices(test)
    assert gold[test.tasks.index("arc-challenge")] in list("ABCD")
    assert all(g is None for g, t in zip(gold, test.tasks) if t == "mbpp")  # code has no letter
    rows = vote_eval(load_router(carrot_artifact), embed_cached(embedder, test.prompts, progress=False), test, ks=(1, 3))
    one, three = rows
    assert one["prompts"] == three["prompts"] > 40  # arc and winogrande rows with a checkable answer
    assert 0.5 < one["accuracy"] <= 1 and 0.5 < three["accuracy"] <= 1
    assert three["mean_cost_usd"] > one["mean_cost_usd"]  # three calls cost more than one
    write_vote_report(rows, tmp_path, {"data": str(bench_slice), "router": "carrot", "cost_weight": 0.0})
    assert all((tmp_path / f).stat().st_size > 0 for f in ("results.json", "report.md", "vote.png"))
    assert f"| 3 | {three['prompts']} | {three['accuracy']:.3f} |" in (tmp_path / "report.md").read_text()
