"""The suites read routing data through one loader, so the project's JSONL format must carry
everything they use (splits, tasks, costs, recorded responses) exactly as the RouterBench CSV
does: the same dataset, the same vote results, the same expert roles, the same replay answers.
(`switchyard bench quality` on JSONL without splits is tests/test_quality.py's k-fold test.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.loaders import load_dataset
from evaluation.robustness.suite import dataset_stats
from evaluation.vote import vote_eval
from experts.backends.replay import ReplayBook
from experts.spec import ExpertSpec
from routers.artifacts import load_router
from routers.embedder import embed_cached


def _cell(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@pytest.fixture(scope="module")
def as_jsonl(bench_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = load_dataset(bench_slice)
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    with path.open("w") as fh:
        for i in range(len(d)):
            fh.write(json.dumps({
                "prompt": d.prompts[i], "task": d.tasks[i], "split": d.splits[i],
                "scores": {m: _cell(d.scores[i, j]) for j, m in enumerate(d.models)},
                "costs": {m: _cell(d.costs[i, j]) for j, m in enumerate(d.models)},
                "responses": {m: r for m, r in zip(d.models, d.responses[i]) if r is not None},
            }) + "\n")
    return path


def test_jsonl_carries_what_every_suite_reads(bench_slice: Path, as_jsonl: Path, carrot_artifact: Path, embedder) -> None:  # noqa: ANN001
    csv, js = load_dataset(bench_slice), load_dataset(as_jsonl)
    assert js.models == csv.models and js.prompts == csv.prompts and js.tasks == csv.tasks and js.splits == csv.splits
    np.testing.assert_array_equal(js.scores, csv.scores)
    np.testing.assert_allclose(js.costs, csv.costs)
    assert js.responses == csv.responses

    # bench vote: the same multiple-choice rows, accuracies and costs
    router = load_router(carrot_artifact)
    runs = []
    for data in (csv, js):
        test = data.split("test")
        runs.append(vote_eval(router, embed_cached(embedder, test.prompts, progress=False), test, ks=(1, 3)))
    assert runs[0] == runs[1] and runs[0][0]["prompts"] > 0

    # bench robustness: expert roles and the clean RouterBench sample come from dataset_stats
    (stats_csv, test_csv), (stats_js, test_js) = dataset_stats(bench_slice), dataset_stats(as_jsonl)
    assert stats_js.keys() == stats_csv.keys()
    for m in stats_csv:
        assert stats_js[m] == pytest.approx(stats_csv[m])
    assert test_js.prompts == test_csv.prompts

    # bench replay: the replay backend answers from the JSONL's recorded responses and costs
    book = ReplayBook(js)
    i = js.models.index("gpt-4-1106-preview")
    row = next(r for r in range(len(js)) if js.responses[r][i] is not None)
    spec = ExpertSpec(name="replay:gpt-4", backend="replay", replay_data=str(as_jsonl), stands_for="gpt-4-1106-preview")
    text, cost = book.answer(spec, js.prompts[row])
    assert text == js.responses[row][i] and cost == pytest.approx(js.costs[row, i])
