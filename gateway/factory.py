"""The app factory `switchyard serve --workers N` hands uvicorn: each worker process builds its
own app from the config path in SWITCHYARD_SERVE_CONFIG (state is shared through Redis)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import load_settings

CONFIG_ENV = "SWITCHYARD_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    return create_app(load_settings(os.environ[CONFIG_ENV]))
