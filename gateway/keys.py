"""Client API keys: random secrets handed out once, kept only as their SHA-256.

A secret is `sk-sy-` + 32 random bytes (url-safe base64). The store keeps the hash (to look a
presented key up) and a short display prefix, never the secret: a leaked store dump cannot
be replayed against the gateway. SHA-256 without a salt is enough here because the secrets
are 256-bit random, not passwords a dictionary could guess.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from pydantic import BaseModel, ConfigDict, Field

SECRET_PREFIX = "sk-sy-"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


class KeyLimits(BaseModel):
    """Per-key limits; None = unlimited. Rates are per `rate_limit_window_s` (60 s: per minute)."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens (prompt + completion) per minute")
    budget_usd: float | None = Field(default=None, gt=0, description="USD this key may spend in all")


class KeyCreate(KeyLimits):
    """Body of POST /admin/keys."""

    name: str = Field(min_length=1, max_length=128, description="who the key is for")


class KeyRecord(BaseModel):
    """What the store keeps about a key (no secret)."""

    id: str
    name: str
    hash: str = Field(description="sha256 of the secret, hex")
    prefix: str = Field(description="the secret's first characters, to tell keys apart")
    created_at: float
    revoked_at: float | None = None
    limits: KeyLimits = KeyLimits()

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict:
        """The admin API's view: everything but the hash."""
        return {"object": "api_key", **self.model_dump(exclude={"hash"}), "revoked": self.revoked}


def issue(body: KeyCreate) -> tuple[str, KeyRecord]:
    """A new secret and the record to store for it."""
    secret = new_secret()
    limits = KeyLimits(rpm=body.rpm, tpm=body.tpm, budget_usd=body.budget_usd)
    record = KeyRecord(id=new_key_id(), name=body.name, hash=hash_secret(secret), prefix=secret[: len(SECRET_PREFIX) + 4],
                       created_at=time.time(), limits=limits)
    return secret, record
