"""The `switchyard` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROUTERBENCH_MODELS, write_config


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard.cli", *args], capture_output=True, text=True, timeout=300)


def test_train_then_route(bench_slice: Path, tmp_path: Path) -> None:
    out = tmp_path / "carrot.npz"
    r = run("train", "--router", "carrot", "--data", str(bench_slice), "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rows"] == 240 and len(summary["models"]) == 11 and out.exists()
    config = write_config(tmp_path, out, "http://127.0.0.1:9/v1", ROUTERBENCH_MODELS)
    prompt = "Write a Python function that returns the n-th Fibonacci number."
    cheap = json.loads(run("route", "--config", str(config), "--cost-weight", "1", prompt).stdout)
    best = json.loads(run("route", "--config", str(config), "--cost-weight", "0", prompt).stdout)
    assert cheap["experts"] == ["mistralai/mistral-7b-chat"]
    assert best["predicted"][best["experts"][0]]["cost_usd"] > cheap["predicted"][cheap["experts"][0]]["cost_usd"]


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path) -> None:
    cases = [
        ("train", "--router", "carrot", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x.npz")),
        ("train", "--router", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "x.npz")),
        ("route", "--config", str(tmp_path / "missing.yaml"), "hi"),
        ("serve", "--config", str(tmp_path / "missing.yaml")),
    ]
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    for args in cases:
        r = run(*args)
        assert r.returncode != 0, args
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("routers:\n  - name: carrot\n    artifact: nowhere.npz\nexperts: []\n")
    r = run("route", "--config", str(bad), "hi")
    assert r.returncode != 0 and "nowhere.npz" in r.stderr and r.stderr.count("\n") == 1


def test_example_config_validates() -> None:
    from gateway.settings import load_settings

    settings = load_settings(Path(__file__).resolve().parent.parent / "examples" / "gateway.yaml")
    assert settings.default_router == "carrot" and len(settings.experts) == 3
    assert {e.profile for e in settings.experts} >= {"mistralai/mistral-7b-chat", "gpt-4-1106-preview"}
