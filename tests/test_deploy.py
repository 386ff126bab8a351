"""The deployment files: docker-compose.yml wires what the gateway config expects.

Docker cannot run vLLM here (no GPU), so this checks the wiring a broken edit would break:
services, GPU reservations, healthchecks, start order, and that the mounted gateway config
validates and points at the compose services.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from gateway.settings import load_settings
from tests.conftest import REPO, ROUTERBENCH_MODELS

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VLLM = [name for name, svc in SERVICES.items() if str(svc.get("image", "")).startswith("vllm/vllm-openai")]


def test_services_and_start_order() -> None:
    assert {"redis", "gateway"} <= set(SERVICES) and len(VLLM) == 2
    for name in ["redis", "gateway", *VLLM]:
        assert SERVICES[name]["healthcheck"]["test"], name
    needs = SERVICES["gateway"]["depends_on"]
    assert all(needs[name]["condition"] == "service_healthy" for name in ["redis", *VLLM])
    assert needs["train"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", VLLM)
def test_vllm_experts_reserve_a_gpu_and_serve_their_name(name: str) -> None:
    svc = SERVICES[name]
    (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    args = svc["command"]
    assert args[args.index("--served-model-name") + 1] == name  # the config's model id defaults to the expert name


def test_gateway_config_validates_and_points_at_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_STORE_URL", SERVICES["gateway"]["environment"]["SWITCHYARD_STORE_URL"])
    settings = load_settings(REPO / "deploy" / "gateway.yaml")
    assert urlparse(settings.store_url).hostname == "redis"
    assert {urlparse(e.base_url).hostname for e in settings.experts} == set(VLLM)
    assert all(e.profile in ROUTERBENCH_MODELS for e in settings.experts)
    mounts = SERVICES["gateway"]["volumes"]
    assert any(m.endswith(":/etc/switchyard/gateway.yaml:ro") for m in mounts)
    assert str(settings.routers[0].artifact).startswith("/artifacts/")


def test_dockerfile_copies_every_package() -> None:
    text = (REPO / "Dockerfile").read_text()
    include = re.search(r"include = \[(.*?)\]", (REPO / "pyproject.toml").read_text()).group(1)
    for package in re.findall(r'"(\w+)\*"', include):
        assert re.search(rf"^COPY {package} {package}$", text, re.M), package
    assert 'torch==2.13.0' in text
