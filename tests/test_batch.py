"""`switchyard batch`: routed by a carrot artifact trained on a RouterBench slice, over two tiny
random transformers experts (built here, loaded from disk) and a loopback HTTP expert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from experts.engines.base import model_loads
from experts.engines.tiny import build_tiny_model
from experts.loopback import Behaviour, LoopbackState
from experts.spec import ExpertSpec
from routers.embedder import Embedder
from switchyard.batch import run_batch
from switchyard.demo import ROUTERBENCH_PRICES

QUESTIONS = [
    "What is 2+2?", "Write a Python function to reverse a list.", "Which is heavier, a feather or a brick? Answer A or B.",
    "Prove that the square root of two is irrational.", "Translate 'hello' into French.", "Sort [3,1,2] in Python.",
    "Name the largest planet.", "What does HTTP stand for?",
]
# Against these experts' profiles the router sends w=0 to the strongest (loop-http, as gpt-4),
# w=0.99 to the middle one (tiny-llama, as mixtral) and w=1 to the cheapest (tiny-gpt2, as mistral-7b).
WEIGHTS = (0.0, 0.99, 1.0)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    vocab = [q.lower() for q in QUESTIONS] * 2
    return {"gpt2": build_tiny_model(root / "gpt2", vocab, "gpt2", chat_template=True),
            "llama": build_tiny_model(root / "llama", vocab, "llama", chat_template=False)}


def _expert(name: str, stands_for: str, **extra: Any) -> dict[str, Any]:
    pin, pout = ROUTERBENCH_PRICES[stands_for]
    return {"name": name, "stands_for": stands_for, "input_price": pin, "output_price": pout, **extra}


def batch_config(tmp: Path, artifact: Path, models: dict[str, Path], loop_url: str, loop_concurrency: int = 4) -> Path:
    config = {
        "routers": [{"name": "carrot", "artifact": str(artifact)}],
        "experts": [
            _expert("tiny-gpt2", "mistralai/mistral-7b-chat", backend="transformers", model=str(models["gpt2"]), max_concurrency=8),
            _expert("tiny-llama", "mistralai/mixtral-8x7b-chat", backend="transformers", model=str(models["llama"]), max_concurrency=8),
            _expert("loop-http", "gpt-4-1106-preview", base_url=loop_url, max_concurrency=loop_concurrency),
            # by name only (profiles the router does not know): a failing upstream and a missing vLLM
            {"name": "loop-broken", "stands_for": "none", "base_url": loop_url},
            {"name": "vllm-x", "stands_for": "none", "backend": "vllm", "model": "/nowhere"},
        ],
    }
    path = tmp / "batch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def request_line(cid: str, question: str, model: str, **body: Any) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 4,
                                "temperature": 0, **body}})


def routed_lines() -> list[str]:
    return [request_line(f"q{i}-w{w}", q, f"carrot@{w}") for i, q in enumerate(QUESTIONS) for w in WEIGHTS]


def custom_id(line: str) -> str | None:
    try:
        return json.loads(line).get("custom_id")
    except ValueError:
        return None


def read_out(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_engine_backends_need_a_model() -> None:
    with pytest.raises(ValidationError, match="needs model"):
        ExpertSpec(name="t", backend="transformers")
    assert ExpertSpec(name="t", backend="vllm", model="/m", engine_options={"tensor_parallel_size": 2}).base_url == ""


def test_batch_routes_groups_runs_in_order_with_per_line_errors(
    tmp_path: Path, carrot_artifact: Path, tiny_models: dict[str, Path], loopback: tuple[str, LoopbackState], embedder: Embedder
) -> None:
    url, state = loopback
    state.behaviours["loop-broken"] = Behaviour(fail_status=500)
    config = batch_config(tmp_path, carrot_artifact, tiny_models, url)
    bad = [
        ("{not json", "invalid_json"),
        (json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}), "missing_custom_id"),
        (request_line("q0-w0.0", "dup", "carrot"), "duplicate_custom_id"),
        (json.dumps({"custom_id": "emb", "url": "/v1/embeddings", "body": {"input": "x"}}), "invalid_url"),
        (json.dumps({"custom_id": "nomsg", "url": "/v1/chat/completions", "body": {"model": "carrot"}}), "invalid_body"),
        (request_line("streamed", "hi", "carrot", stream=True), "invalid_body"),
    ]
    failing = [  # lines that run and fail: (line, status)
        (request_line("unknown-model", "hi", "no-such-model"), 404),
        (request_line("upstream-500", "hi", "loop-broken"), 502),
        (request_line("engine-400", "hi", "tiny-gpt2", max_tokens=0), 400),
        (request_line("no-vllm", "hi", "vllm-x"), 503),
    ]
    good = routed_lines()
    lines = good[:5] + [b for b, _ in bad] + good[5:12] + [f for f, _ in failing] + good[12:]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n\n")  # a trailing blank line is no request
    out = tmp_path / "out.jsonl"
    before = model_loads.copy()

    summary = run_batch(tmp_path / "in.jsonl", config, out, embedder=embedder, progress=False)

    records = read_out(out)
    assert len(records) == len(lines) and not (tmp_path / "out.jsonl.progress").exists()
    assert [r["custom_id"] for r in records] == [custom_id(line) for line in lines]  # input order
    by_id = {r["custom_id"]: r for r in records[::-1] if r["custom_id"]}  # reversed: a duplicated id maps to its first line
    # every routed line: 200, the expert with the best predicted utility, answered by that expert
    chosen = {}
    for raw in good:
        cid = json.loads(raw)["custom_id"]
        rec = by_id[cid]
        assert rec["error"] is None and rec["response"]["status_code"] == 200, rec
        body = rec["response"]["body"]
        routing = body["routing"]
        best = max(routing["predicted"], key=lambda n: routing["predicted"][n]["utility"])
        assert routing["experts"] == [best] == [body["model"]] and routing["router"] == "carrot"
        if best != "loop-http":  # the engines honour max_tokens (the loopback does not read it)
            assert 1 <= body["usage"]["completion_tokens"] <= 4 and body["choices"][0]["finish_reason"] in ("stop", "length")
        chosen[cid] = best
    assert set(chosen.values()) == {"tiny-gpt2", "tiny-llama", "loop-http"}, chosen  # all three groups ran
    # the loopback expert saw exactly the lines routed to it (plus the broken one), each once
    to_loop = sorted(json.loads(r)["body"]["messages"][0]["content"] for r in good if chosen[json.loads(r)["custom_id"]] == "loop-http")
    seen = sorted(r["messages"][0]["content"] for r in state.requests if r["model"] == "loop-http")
    assert seen == to_loop
    # one model load per engine expert used, however many lines it answered
    assert {n: model_loads[n] - before[n] for n in ("tiny-gpt2", "tiny-llama")} == {"tiny-gpt2": 1, "tiny-llama": 1}
    assert summary["model_loads"] == {"tiny-gpt2": 1, "tiny-llama": 1, "vllm-x": 0}  # vLLM is not installed here
    assert summary["groups"]["tiny-gpt2"]["lines"] == sum(1 for e in chosen.values() if e == "tiny-gpt2") + 1
    assert summary["lines"] == len(lines) and summary["ran"] == len(good) + 3 and summary["lines_per_second"] > 0
    # bad lines: errors in place, nothing crashed
    for (raw, code), rec in zip(bad, records[5 : 5 + len(bad)]):
        assert rec["response"] is None and rec["error"]["code"] == code, (raw, rec)
    for (raw, status), rec in zip(failing, records[12 + len(bad) : 12 + len(bad) + len(failing)]):
        assert rec["custom_id"] == json.loads(raw)["custom_id"] and rec["error"] is None
        assert rec["response"]["status_code"] == status and "message" in rec["response"]["body"]["error"], rec
    assert "switchyard[vllm]" in by_id["no-vllm"]["response"]["body"]["error"]["message"]
    assert by_id["upstream-500"]["response"]["body"]["routing"]["experts"] == ["loop-broken"]
    assert by_id["q0-w0.0"]["response"]["status_code"] == 200  # the first of the duplicated ids ran

    # the broken upstream recovers: --retry-failed reruns its 5xx line (and the vLLM one), nothing else
    state.behaviours["loop-broken"] = Behaviour()
    state.requests.clear()
    again = run_batch(tmp_path / "in.jsonl", config, out, retry_failed=True, embedder=embedder, progress=False)
    retried = read_out(out)
    assert again["ran"] == 2 and again["resumed"] == len(lines) - 2 and [r["model"] for r in state.requests] == ["loop-broken"]
    changed = [r["custom_id"] for r, old in zip(retried, records) if r != old]
    assert changed == ["upstream-500", "no-vllm"] and retried[records.index(by_id["upstream-500"])]["response"]["status_code"] == 200


def cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.Popen([sys.executable, "-m", "switchyard.cli", "batch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_batch_resumes_after_a_kill_without_redoing_lines(
    tmp_path: Path, carrot_artifact: Path, tiny_models: dict[str, Path], loopback: tuple[str, LoopbackState], embedder: Embedder
) -> None:
    url, state = loopback
    state.behaviours["loop-http"] = Behaviour(delay_s=0.25)  # slow enough to be killed mid-group
    config = batch_config(tmp_path, carrot_artifact, tiny_models, url, loop_concurrency=1)
    lines = routed_lines()
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    out, progress = tmp_path / "out.jsonl", tmp_path / "out.jsonl.progress"

    proc = cli(str(tmp_path / "in.jsonl"), "--config", str(config), "--out", str(out))  # as a user runs it
    deadline = time.monotonic() + 240
    while not (progress.exists() and progress.read_bytes().count(b'"model": "loop-http"') >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what `kill` sends; Ctrl-C takes the same path
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and stderr.splitlines()[-1].startswith("error: interrupted"), stderr[-2000:]
    assert not out.exists()
    entries = progress.read_bytes().splitlines(keepends=True)
    progress.write_bytes(b"".join(entries[:-1]) + entries[-1][:20])  # tear the last entry, as a kill mid-write would
    kept = {json.loads(x)["i"] for x in entries[:-1]}
    assert 0 < len(kept) < len(lines)
    state.requests.clear()
    before = model_loads.copy()

    summary = run_batch(tmp_path / "in.jsonl", config, out, embedder=embedder, progress=False)

    records = read_out(out)
    assert [r["custom_id"] for r in records] == [custom_id(x) for x in lines]
    assert all(r["response"]["status_code"] == 200 for r in records)
    assert summary["resumed"] == len(kept) and summary["ran"] == len(lines) - len(kept)
    # the rerun sent the loopback only the loop-http lines the log did not hold
    redo = sorted(json.loads(lines[i])["body"]["messages"][0]["content"] for i, r in enumerate(records)
                  if i not in kept and r["response"]["body"]["model"] == "loop-http")
    assert sorted(r["messages"][0]["content"] for r in state.requests) == redo
    # engines with lines left load once; engines whose lines were all done do not load at all
    left = {records[i]["response"]["body"]["model"] for i in range(len(lines)) if i not in kept} - {"loop-http"}
    assert {n: model_loads[n] - before[n] for n in ("tiny-gpt2", "tiny-llama")} == {n: int(n in left) for n in ("tiny-gpt2", "tiny-llama")}
    with pytest.raises(ValueError, match="--overwrite"):  # a finished job is not redone by accident
        run_batch(tmp_path / "in.jsonl", config, out, embedder=embedder, progress=False)


def test_batch_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    good = tmp_path / "in.jsonl"
    good.write_text(request_line("a", "hi", "carrot") + "\n")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("experts:\n  - name: t\n    backend: transformers\n")
    o = tmp_path / "o.jsonl"
    for args, message in [
        ((tmp_path / "missing.jsonl", bad_yaml), "input file not found"),
        ((tmp_path / "empty.jsonl", bad_yaml), "no request lines"),
        ((good, tmp_path / "missing.yaml"), "config file not found"),
        ((good, bad_yaml), "needs model"),
    ]:
        with pytest.raises(ValueError, match=message):
            run_batch(*args, o, progress=False)
    proc = cli(str(good), "--config", str(bad_yaml), "--out", str(o))  # the command line turns them into one line
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stderr.startswith("error: ") and "needs model" in stderr and stderr.count("\n") == 1, stderr
