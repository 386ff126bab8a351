"""`switchyard keys ...`: create, list and revoke client keys through a running gateway's
admin API (the gateway holds the store; the CLI never touches it directly)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import httpx
import typer

from switchyard.cli_errors import fail

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Client API keys with rate limits and budgets.")

Url = Annotated[str, typer.Option("--url", envvar="SWITCHYARD_URL", help="the gateway's base URL")]
AdminKey = Annotated[Optional[str], typer.Option("--admin-key", envvar="SWITCHYARD_ADMIN_KEY", help="the gateway's admin key")]


def call(method: str, url: str, admin_key: str | None, path: str, body: dict[str, Any] | None = None) -> Any:
    """One admin API call; any failure becomes a one-line error."""
    if not admin_key:
        fail("an admin key is needed: --admin-key or SWITCHYARD_ADMIN_KEY")
    try:
        r = httpx.request(method, url.rstrip("/") + path, json=body, headers={"authorization": f"Bearer {admin_key}"}, timeout=10)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the gateway at {url}: {type(exc).__name__}: {exc}")
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text.strip().splitlines()[0] if r.text.strip() else r.reason_phrase
        fail(f"{r.status_code} from {url}{path}: {message}")
    return r.json()


def show(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="who the key is for")],
    rpm: Annotated[Optional[int], typer.Option(min=1, help="requests per minute")] = None,
    tpm: Annotated[Optional[int], typer.Option(min=1, help="tokens per minute")] = None,
    budget_usd: Annotated[Optional[float], typer.Option(min=0.0, help="USD the key may spend in all")] = None,
    url: Url = "http://127.0.0.1:8000",
    admin_key: AdminKey = None,
) -> None:
    """Create a key; its secret is printed now and never again."""
    body = {"name": name, "rpm": rpm, "tpm": tpm, "budget_usd": budget_usd}
    show(call("POST", url, admin_key, "/admin/keys", {k: v for k, v in body.items() if v is not None}))


@app.command("list")
def list_keys(url: Url = "http://127.0.0.1:8000", admin_key: AdminKey = None) -> None:
    """List keys (no secrets) with their limits, state and usage."""
    show(call("GET", url, admin_key, "/admin/keys")["data"])


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (key_...)")],
    url: Url = "http://127.0.0.1:8000",
    admin_key: AdminKey = None,
) -> None:
    """Revoke a key: every gateway sharing the store refuses it from the next request."""
    show(call("DELETE", url, admin_key, f"/admin/keys/{key_id}"))


@app.command()
def usage(url: Url = "http://127.0.0.1:8000", admin_key: AdminKey = None) -> None:
    """Requests, tokens and spend per key, router and expert."""
    show(call("GET", url, admin_key, "/admin/usage"))
