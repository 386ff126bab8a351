from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.loaders import DatasetError, load_dataset


def test_routerbench_slice_loads_with_splits_costs_and_responses(bench_slice: Path) -> None:
    ds = load_dataset(bench_slice)
    assert len(ds.models) == 11 and "gpt-4-1106-preview" in ds.models
    assert len(ds) == 3 * (80 + 30)
    assert set(ds.splits) == {"train", "test"}
    assert len(ds.split("train")) == 240 and len(ds.split("test")) == 90
    assert ds.costs is not None and np.nanmin(ds.costs) >= 0
    assert set(np.unique(ds.scores[~np.isnan(ds.scores)])) <= {0.0, 1.0}
    assert ds.responses is not None and len(ds.responses[0]) == 11
    assert not ds.prompts[0].startswith("[")  # the list literal was parsed
    assert {"arc-challenge", "winogrande", "mbpp"} <= {t.split(".")[0] for t in ds.tasks}


def test_routerbench_pickle_is_read_too(bench_slice: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(next(bench_slice.glob("mbpp_train.csv")))
    frame.to_pickle(tmp_path / "routerbench_0shot.pkl")
    ds = load_dataset(tmp_path / "routerbench_0shot.pkl")
    assert len(ds) == len(frame) and len(ds.models) == 11


def test_bad_files_get_one_line_errors_naming_file_row_and_field(bench_slice: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(next(bench_slice.glob("arc_challenge_test.csv")))
    frame["gpt-4-1106-preview|total_cost"] = frame["gpt-4-1106-preview|total_cost"].astype(object)
    frame.loc[2, "gpt-4-1106-preview|total_cost"] = "lots"
    bad = tmp_path / "bad_test.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(DatasetError) as err:
        load_dataset(bad)
    msg = str(err.value)
    assert "bad_test.csv" in msg and "row 3" in msg and "gpt-4-1106-preview|total_cost" in msg and "\n" not in msg
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a recognised"):
        load_dataset(tmp_path / "notes.txt")
