"""Who is calling: the admin key for /admin, and client keys (from the config, or created
through the admin API and kept hashed in the store) with their limits for /v1.

Client auth is on once any key exists (configured or created); a gateway with none is open,
as before. Config keys keep working and have no limits; created keys carry theirs.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from gateway.errors import GatewayError
from gateway.keys import hash_secret
from gateway.limits import ratelimit_headers, refusal
from gateway.logs import current
from gateway.metrics import Metrics
from gateway.store import Store, StoreError
from gateway.usage import ANONYMOUS


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


def check_admin(request: Request, admin_key: SecretStr | None) -> None:
    if admin_key is None:
        raise GatewayError(403, "the admin API is disabled: set admin_key in the config", None, "admin_disabled")
    if not _matches(bearer(request), [admin_key]):
        raise GatewayError(401, "invalid or missing admin key", None, "invalid_api_key")


class ClientAccess:
    def __init__(self, store: Store, config_keys: list[SecretStr], window_s: float, metrics: Metrics) -> None:
        self.store, self.window_s, self.metrics = store, window_s, metrics
        # Config keys are looked up by hash too: a dict probe of a SHA-256 leaks nothing useful.
        self.config_keys = {hash_secret(k.get_secret_value()): f"config-{hash_secret(k.get_secret_value())[:8]}" for k in config_keys}

    async def admit(self, request: Request, count: bool = True) -> str:
        """Authenticate the caller and, if `count`, check and count one request against its
        limits. Returns the key id (also set on the request context); raises 401 or 429."""
        token = bearer(request)
        token_hash = hash_secret(token) if token else ""
        ctx = current()
        if token_hash in self.config_keys:
            ctx.key_id = self.config_keys[token_hash]
            return ctx.key_id
        try:
            adm = await self.store.admit(token_hash, self.window_s, count)
        except StoreError as exc:
            raise GatewayError(503, f"cannot check the API key: {exc}", None, "store_unavailable") from None
        if adm.status == "unknown":
            if adm.any_keys or self.config_keys:
                self.metrics.auth_failures.inc()
                raise GatewayError(401, "invalid or missing API key", None, "invalid_api_key")
            ctx.key_id = ANONYMOUS
            return ctx.key_id
        ctx.key_id = adm.key_id
        ctx.headers.update(ratelimit_headers(adm))
        if adm.status != "ok" and count:
            self.metrics.rate_limited.labels(adm.status).inc()
            raise refusal(adm, self.window_s)
        return ctx.key_id
