"""Router artifacts: one .npz file (no pickle) holding the fitted arrays and a JSON header."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from routers.base import Router
from routers.baselines import BestSingleRouter, CheapestRouter, KnnRouter, RandomRouter
from routers.carrot import CarrotLinearRouter, CarrotRouter
from routers.glider import GliderRouter
from routers.mf import MfRouter
from routers.mlp import MlpRouter
from routers.skills import SkillsRouter
from routers.stack import StackRouter

FORMAT_VERSION = 1
ROUTER_KINDS: dict[str, type[Router]] = {
    cls.kind: cls for cls in (CarrotRouter, CarrotLinearRouter, RandomRouter, CheapestRouter, BestSingleRouter, KnnRouter, MlpRouter, MfRouter, SkillsRouter, GliderRouter, StackRouter)
}


class ArtifactError(ValueError):
    pass


def save_router(router: Router, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": "switchyard-router", "version": FORMAT_VERSION, **router.meta(), **(extra or {})}
    arrays = {f"a_{k}": v for k, v in (router.arrays() | router.profile_arrays()).items()}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    os.replace(tmp, path)
    return path


def load_router(path: str | Path) -> Router:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(npz["__header__"].tobytes().decode())
            arrays = {k[2:]: npz[k] for k in npz.files if k.startswith("a_")}
    except FileNotFoundError:
        raise ArtifactError(f"router artifact not found: {path}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: not a switchyard router artifact ({exc})") from None
    if header.get("format") != "switchyard-router":
        raise ArtifactError(f"{path}: not a switchyard router artifact")
    if header.get("version", 0) > FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact version {header['version']} is newer than this switchyard ({FORMAT_VERSION})")
    cls = ROUTER_KINDS.get(header["kind"])
    if cls is None:
        raise ArtifactError(f"{path}: unknown router kind {header['kind']!r}")
    router = cls(header["models"], header["cost_ref"], **header.get("params", {}))
    router.load_arrays(arrays)
    router.load_profiles(header.get("profiles", []), arrays)
    router.header = header  # type: ignore[attr-defined]
    return router


def build_router(kind: str, models: list[str], **params: Any) -> Router:
    cls = ROUTER_KINDS.get(kind)
    if cls is None:
        raise ArtifactError(f"unknown router kind {kind!r}; known: {', '.join(sorted(ROUTER_KINDS))}")
    return cls(models, **params)
