"""Shared fixtures: real Redis on a free port, loopback experts, a carrot artifact trained on a
small slice of the real RouterBench data, and gateways served over real HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from experts.loopback import LoopbackState, build_loopback_app
from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from switchyard.demo import expert_config
from switchyard.redis_server import redis_server
from switchyard.threaded import ThreadedServer, free_port
from switchyard.training import train_router

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SWITCHYARD_DATA", REPO.parent / "shared" / "data"))
ROUTERBENCH = DATA / "routerbench"


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("SWITCHYARD_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="session")
def bench_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RouterBench slice in its own CSV format: 80 train and 30 test rows per task."""
    if not ROUTERBENCH.exists():
        pytest.fail(f"routing data not found at {ROUTERBENCH}: set SWITCHYARD_DATA")
    out = tmp_path_factory.mktemp("routerbench_slice")
    for f in sorted(ROUTERBENCH.glob("*.csv")):
        n = 80 if f.stem.endswith("_train") else 30
        pd.read_csv(f).head(n).to_csv(out / f.name, index=False)
    return out


@pytest.fixture(scope="session")
def carrot_artifact(bench_slice: Path, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("artifacts") / "carrot.npz"
    train_router("carrot", bench_slice, path, embedder=embedder)
    return path


@pytest.fixture()
def loopback() -> Iterator[tuple[str, LoopbackState]]:
    state = LoopbackState()
    with ThreadedServer(build_loopback_app(state)) as server:
        yield f"{server.url}/v1", state


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis server .ci/run started (SWITCHYARD_TEST_REDIS_URL), else one of our own."""
    if url := os.environ.get("SWITCHYARD_TEST_REDIS_URL"):
        yield url
        return
    with ExitStack() as stack:
        try:
            url = stack.enter_context(redis_server())
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url


@pytest.fixture()
def clean_redis(redis_url: str) -> str:
    import redis  # noqa: PLC0415

    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def write_config(tmp: Path, artifact: Path, expert_url: str, models: list[str], **extra: Any) -> Path:
    config = {
        "routers": [{"name": "carrot", "kind": "carrot", "artifact": str(artifact)}],
        "experts": expert_config(models, expert_url.removesuffix("/v1")),
        "admin_key": "admin-secret",
        **extra,
    }
    path = tmp / f"gateway-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


ROUTERBENCH_MODELS = [
    "WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2", "gpt-3.5-turbo-1106", "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat", "meta/llama-2-70b-chat", "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
]


@pytest.fixture()
def serve_gateway(tmp_path: Path, carrot_artifact: Path, embedder: Embedder) -> Iterator[Callable[..., ThreadedServer]]:
    """Start gateways over HTTP: serve_gateway(expert_url, **config_overrides) -> server."""
    started: list[ThreadedServer] = []

    def start(expert_url: str, models: list[str] | None = None, **extra: Any) -> ThreadedServer:
        path = write_config(tmp_path, carrot_artifact, expert_url, models or ROUTERBENCH_MODELS, **extra)
        server = ThreadedServer(create_app(load_settings(path), embedder=embedder)).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()
