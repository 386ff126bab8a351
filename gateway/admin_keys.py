"""Admin API for client keys and usage: POST/GET /admin/keys, DELETE /admin/keys/{id},
GET /admin/usage. The secret is in the create response only; the store never sees it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from gateway.auth import check_admin
from gateway.errors import GatewayError
from gateway.keys import KeyCreate, issue
from gateway.schemas import parse_body
from gateway.store import Store
from gateway.usage import UsageLedger

MAX_BODY = 64 * 1024


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise GatewayError(413, f"request body over {MAX_BODY} bytes", None, "request_too_large")
    return await request.body()


def key_routes(store: Store, ledger: UsageLedger, admin_key: SecretStr | None) -> APIRouter:
    api = APIRouter()

    @api.post("/admin/keys", status_code=201)
    async def create_key(request: Request) -> JSONResponse:
        check_admin(request, admin_key)
        body = parse_body(await _body(request), KeyCreate)
        secret, record = issue(body)
        await store.create_key(record)
        return JSONResponse({**record.public(), "key": secret}, status_code=201)

    @api.get("/admin/keys")
    async def list_keys(request: Request) -> dict[str, Any]:
        check_admin(request, admin_key)
        spent = (await store.usage())["keys"]
        keys = sorted(await store.list_keys(), key=lambda k: k.created_at)
        return {"object": "list", "data": [{**k.public(), "usage": spent.get(k.id)} for k in keys]}

    @api.delete("/admin/keys/{key_id}")
    async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
        check_admin(request, admin_key)
        record = await store.revoke_key(key_id)
        if record is None:
            raise GatewayError(404, f"no key with id {key_id!r}", "id", "key_not_found")
        return record.public()

    @api.get("/admin/usage")
    async def usage(request: Request) -> dict[str, Any]:
        check_admin(request, admin_key)
        return await ledger.report()

    return api
