"""Switchyard: the `switchyard` command line, fronting gateway, routers, experts and evaluation."""

__version__ = "0.1.0"
