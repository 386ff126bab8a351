"""Experts: specs and registry, upstream backends, loopback test servers."""

from experts.spec import ExpertSpec

__all__ = ["ExpertSpec"]
