"""Loaders: routing data files in public formats -> RoutingDataset."""

from __future__ import annotations

from pathlib import Path

from evaluation.loaders.errors import DatasetError
from evaluation.loaders.routerbench import is_routerbench, load_routerbench
from routers.dataset import RoutingDataset


def load_dataset(path: str | Path) -> RoutingDataset:
    """Load a file or folder, detecting its format."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if is_routerbench(path):
        return load_routerbench(path)
    raise DatasetError(f"{path}: not a recognised routing dataset (expected RouterBench .csv/.pkl)")


__all__ = ["DatasetError", "load_dataset"]
