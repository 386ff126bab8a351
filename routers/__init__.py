"""Routers: embedder, the Router contract and decision, implementations, artifacts."""

from routers.base import Decision, Estimates, Router, decide, utility
from routers.dataset import RoutingDataset

__all__ = ["Decision", "Estimates", "Router", "RoutingDataset", "decide", "utility"]
