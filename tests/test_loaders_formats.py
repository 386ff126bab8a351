"""RouterDC, LLMRouter and Switchyard JSONL loaders on the real data, plus their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.loaders import DatasetError, load_dataset
from evaluation.loaders.prices import estimate_tokens, output_tokens
from tests.conftest import DATA

ROUTERDC = DATA / "routerdc7"
LLMROUTER = DATA / "llmrouter"
ROUTERDC_TASKS = {"mmlu", "gsm8k", "arc_challenge", "arc_easy", "cmmlu", "humaneval", "MATH_prealgebra", "ceval", "mbpp",
                  "javascript"}


def _require(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"routing data not found at {path}: set SWITCHYARD_DATA")


def _one_line_error(path: Path, *parts: str, **kwargs: object) -> str:
    with pytest.raises(DatasetError) as err:
        load_dataset(path, **kwargs)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


def test_routerdc_folder_loads_seven_models_ten_tasks_with_splits_and_costs() -> None:
    _require(ROUTERDC)
    ds = load_dataset(ROUTERDC)
    assert len(ds.models) == 7 and "meta-llama/Meta-Llama-3-8B" in ds.models
    assert set(ds.tasks) == ROUTERDC_TASKS
    by_task = {(t, s) for t, s in zip(ds.tasks, ds.splits)}
    assert {("mmlu", "train"), ("mmlu", "test"), ("gsm8k", "train"), ("gsm8k", "test")} <= by_task
    assert {s for t, s in by_task if t in ("ceval", "mbpp", "javascript", "MATH_prealgebra")} == {""}
    assert len(ds.split("train")) + len(ds.split("test")) + ds.splits.count("") == len(ds)
    assert ds.costs is not None and ds.costs.dtype == np.float32 and (ds.costs > 0).all()
    assert not np.isnan(ds.scores).any() and ds.scores.min() >= 0 and ds.scores.max() <= 1
    # 8B models are priced 8/7 of the 7B ones on the same prompt.
    ratio = ds.costs[:, ds.models.index("meta-llama/Meta-Llama-3-8B")] / ds.costs[:, ds.models.index("mistralai/Mistral-7B-v0.1")]
    assert np.allclose(ratio, 8 / 7, rtol=1e-4)


def test_routerdc_single_file_and_prices_override(tmp_path: Path) -> None:
    _require(ROUTERDC)
    ds = load_dataset(ROUTERDC / "gsm8k-test.json")
    assert set(ds.tasks) == {"gsm8k"} and set(ds.splits) == {"test"} and len(ds.models) == 7
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({m: {"input_price": 1.0, "output_price": 2.0} for m in ds.models}))
    priced = load_dataset(ROUTERDC / "gsm8k-test.json", prices=prices)
    expected = (estimate_tokens(ds.prompts[0]) * 1.0 + output_tokens("gsm8k") * 2.0) / 1e6
    assert priced.costs is not None and np.allclose(priced.costs[0], expected)


def test_llmrouter_loads_all_rows_with_tasks_and_price_ordered_costs() -> None:
    _require(LLMROUTER)
    ds = load_dataset(LLMROUTER)
    assert len(ds) == 6108 and len(ds.models) == 9
    assert ds.splits.count("train") == 5608 and ds.splits.count("test") == 500
    assert all(ds.tasks) and len(set(ds.tasks)) == 14
    assert ds.costs is not None and (ds.costs > 0).all()
    llm = json.loads((LLMROUTER / "default_llm.json").read_text())
    price = np.array([llm[m]["input_price"] for m in ds.models])
    assert all(llm[m]["input_price"] == llm[m]["output_price"] for m in ds.models)  # so cost is proportional to price
    order = np.argsort(price, kind="stable")
    assert (np.diff(ds.costs[:, order], axis=1) >= 0).all()
    assert np.allclose(ds.costs / price, (ds.costs / price)[:, :1], rtol=1e-4)
    cheap, dear = ds.models.index("gemma-2-9b-it"), ds.models.index("llama3-chatqa-1.5-70b")
    assert (ds.costs[:, cheap] < ds.costs[:, dear]).all()


def test_llmrouter_single_split_file() -> None:
    _require(LLMROUTER)
    ds = load_dataset(LLMROUTER / "test.json")
    assert len(ds) == 500 and set(ds.splits) == {"test"} and all(ds.tasks)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"prompt": "What is 2+2?", "scores": {"big": 1.0, "small": 1.0}, "costs": {"big": 0.002, "small": 0.0001},
     "task": "gsm8k", "split": "train", "id": "q1", "responses": {"big": "4", "small": "4"}},
    {"prompt": "Capital of France?", "scores": {"big": 1.0, "small": 0.0}, "costs": {"big": 0.003, "small": 0.0002},
     "task": "trivia_qa", "split": "test", "id": "q2"},
    {"prompt": "Sort a list in Python.", "scores": {"big": 0.5, "small": None}, "costs": {"big": 0.004, "small": 0.0003}},
]


def test_jsonl_round_trip_with_costs(tmp_path: Path) -> None:
    ds = load_dataset(_write_jsonl(tmp_path / "mine.jsonl", ROWS))
    assert ds.models == ["big", "small"] and len(ds) == 3
    assert ds.prompts == [r["prompt"] for r in ROWS]
    assert ds.tasks == ["gsm8k", "trivia_qa", ""] and ds.splits == ["train", "test", ""]
    assert ds.sample_ids == ["q1", "q2", "mine:3"]
    assert ds.scores[1].tolist() == [1.0, 0.0] and np.isnan(ds.scores[2, 1])
    assert ds.costs is not None and np.allclose(ds.costs[:, 0], [0.002, 0.003, 0.004])
    assert ds.responses is not None and ds.responses[0] == ["4", "4"] and ds.responses[1] == [None, None]


def test_jsonl_without_costs_needs_prices(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "costs"} for r in ROWS]
    path = _write_jsonl(tmp_path / "nocost_train.jsonl", rows)
    _one_line_error(path, "row 1", "field 'costs'", "'big'", "prices")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"big": {"input_price": 10.0, "output_price": 30.0},
                                  "small": {"input_price": 0.1, "output_price": 0.2}}))
    ds = load_dataset(path, prices=prices)
    assert ds.costs is not None and (ds.costs > 0).all() and (ds.costs[:, 0] > ds.costs[:, 1]).all()
    expected = (estimate_tokens(ROWS[1]["prompt"]) * 10.0 + output_tokens("trivia_qa") * 30.0) / 1e6
    assert np.isclose(ds.costs[1, 0], expected)
    assert ds.splits == ["train", "test", "train"]  # the third row's split comes from the file name
    assert ds.responses is not None


def test_jsonl_bad_rows_name_file_row_and_field(tmp_path: Path) -> None:
    bad_scores = [ROWS[0], ROWS[1], {**ROWS[2], "scores": {"big": "high"}}]
    _one_line_error(_write_jsonl(tmp_path / "bad.jsonl", bad_scores), "row 3", "field 'scores'", "expected an object of numbers")
    _one_line_error(_write_jsonl(tmp_path / "bad2.jsonl", [ROWS[0], {**ROWS[1], "split": "dev"}]), "row 2", "field 'split'")
    _one_line_error(_write_jsonl(tmp_path / "bad3.jsonl", [ROWS[0], {**ROWS[1], "costs": {"big": -1}}]), "row 2", "field 'costs'")
    path = tmp_path / "bad4.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    _one_line_error(path, "row 2", "not valid JSON")


def test_routerdc_bad_row_names_file_row_and_field(tmp_path: Path) -> None:
    rows = [{"question": "a", "scores": {"m-7b": 1.0}}, {"question": "b", "scores": {"m-7b": 0.5}},
            {"question": "c", "scores": ["m-7b", 1.0]}]
    path = tmp_path / "toy_train.json"
    path.write_text(json.dumps(rows))
    _one_line_error(path, "row 3", "field 'scores'")
    path.write_text(json.dumps([{"question": 7, "scores": {"m-7b": 1.0}}]))
    _one_line_error(path, "row 1", "field 'question'")
    # No size in the name and no prices file: the message says what to pass.
    path.write_text(json.dumps([{"question": "a", "scores": {"mystery": 1.0}}]))
    _one_line_error(path, "'mystery'", "prices")


def test_llmrouter_bad_row_names_file_row_and_field(tmp_path: Path) -> None:
    _require(LLMROUTER)
    (tmp_path / "default_llm.json").write_text((LLMROUTER / "default_llm.json").read_text())
    good = {"question": "q", "scores": {"codegemma-7b": 1.0}}
    (tmp_path / "train.json").write_text(json.dumps([good, {"question": "r", "scores": {"codegemma-7b": "yes"}}]))
    _one_line_error(tmp_path / "train.json", "row 2", "field 'scores'")
    (tmp_path / "train.json").write_text(json.dumps([good, {**good, "question": "unknown"}]))
    (tmp_path / "default_query_train.jsonl").write_text(json.dumps({"task_name": "mmlu", "query": "q"}) + "\n")
    msg = _one_line_error(tmp_path, "row 2", "field 'question'")
    assert "train.json" in msg
    (tmp_path / "train.json").write_text(json.dumps([good]))
    ds = load_dataset(tmp_path)
    assert ds.tasks == ["mmlu"] and ds.costs is not None and ds.costs[0, 0] > 0
    (tmp_path / "default_llm.json").write_text(json.dumps({"codegemma-7b": {"input_price": "cheap", "output_price": 0.2}}))
    _one_line_error(tmp_path, "'codegemma-7b'", "field 'input_price'")


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "first\u2028second", "scores": {"a": 1.0}, "costs": {"a": 0.1}}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert load_dataset(path).prompts == ["first\u2028second"]
