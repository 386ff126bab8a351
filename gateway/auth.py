"""Bearer-key checks for clients (when keys are configured) and for the admin API."""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from gateway.errors import GatewayError


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(token: str | None, keys: list[SecretStr]) -> bool:
    # Compare against every key so timing does not reveal which one nearly matched.
    found = False
    for key in keys:
        found |= token is not None and hmac.compare_digest(token.encode(), key.get_secret_value().encode())
    return found


def check_client(request: Request, keys: list[SecretStr]) -> None:
    if keys and not _matches(bearer(request), keys):
        raise GatewayError(401, "invalid or missing API key", None, "invalid_api_key")


def check_admin(request: Request, admin_key: SecretStr | None) -> None:
    if admin_key is None:
        raise GatewayError(403, "the admin API is disabled: set admin_key in the config", None, "admin_disabled")
    if not _matches(bearer(request), [admin_key]):
        raise GatewayError(401, "invalid or missing admin key", None, "invalid_api_key")
