"""`switchyard serve`: one process, or N uvicorn workers sharing Redis."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from gateway.logs import log_config
from gateway.settings import Settings, load_settings
from gateway.store import MemoryStore, make_store

WORKER_HEALTHCHECK_S = 60


def _check_shared_store(settings: Settings, workers: int) -> None:
    """Several workers share keys, limits, usage and experts only through Redis: refuse the
    per-process memory store, and a Redis that does not answer, before forking anything."""
    import redis  # noqa: PLC0415

    if isinstance(make_store(settings.store_url), MemoryStore):
        raise ValueError(f"--workers {workers} needs a shared store: set store_url (redis://...); "
                         "the memory store is per process, so limits and keys would not be shared")
    try:
        redis.Redis.from_url(settings.store_url, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        raise ValueError(f"cannot reach the store at {settings.store_url}: {exc}") from None


def _metrics_dir() -> str | None:
    """prometheus-client multiprocess mode: a folder for the workers' metric files, emptied
    first (stale files from an earlier run would be summed in). Returns the folder if it is
    ours to remove afterwards."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder = tempfile.mkdtemp(prefix="switchyard-metrics-")
        return folder
    os.makedirs(given, exist_ok=True)
    for stale in Path(given).glob("*.db"):  # only the metric files: the folder may hold other things
        stale.unlink()
    return None


def serve(config: Path, host: str, port: int, workers: int) -> None:
    settings = load_settings(config)
    logs = log_config(settings.logging.level, settings.logging.format)
    if workers == 1:
        from gateway.app import create_app  # noqa: PLC0415

        uvicorn.run(create_app(settings), host=host, port=port, log_config=logs, access_log=False,
                    timeout_keep_alive=settings.keep_alive_s)
        return
    _check_shared_store(settings, workers)
    from gateway.app import load_routers  # noqa: PLC0415

    load_routers(settings)  # a bad artifact fails here, once, not in every worker
    ours = _metrics_dir()
    from gateway.factory import CONFIG_ENV  # noqa: PLC0415

    os.environ[CONFIG_ENV] = str(config.resolve())
    # A worker answers the supervisor's pings only once its imports are done (torch: seconds on a
    # busy machine); uvicorn's 5 s default kills and respawns workers that are merely starting.
    try:
        uvicorn.run("gateway.factory:app_from_env", factory=True, workers=workers, host=host, port=port, log_config=logs,
                    access_log=False, timeout_worker_healthcheck=WORKER_HEALTHCHECK_S, timeout_keep_alive=settings.keep_alive_s)
    finally:
        if ours:
            shutil.rmtree(ours, ignore_errors=True)
