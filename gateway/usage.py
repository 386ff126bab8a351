"""The usage ledger: every answered request's tokens and cost, per key, router and expert,
written to the store (so budgets hold across workers) and to the request's log line."""

from __future__ import annotations

import logging

from gateway.limits import UsageEntry
from gateway.logs import current
from gateway.store import Store, StoreError

log = logging.getLogger("switchyard.usage")
ANONYMOUS = "anonymous"  # requests to a gateway without client keys
NO_ROUTER = "none"  # an expert named directly


class UsageLedger:
    def __init__(self, store: Store, window_s: float) -> None:
        self.store, self.window_s = store, window_s

    async def record(self, router: str | None, expert: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        ctx = current()
        ctx.note_usage(router, expert, prompt_tokens, completion_tokens, cost_usd)
        entry = UsageEntry(ctx.key_id or ANONYMOUS, router or NO_ROUTER, expert, prompt_tokens, completion_tokens, cost_usd)
        try:
            await self.store.record_usage(entry, self.window_s)
        except StoreError as exc:  # the answer is already on its way: losing a ledger line beats failing it
            log.warning("usage not recorded: %s", exc, extra={"fields": {"key_id": entry.key_id, "cost_usd": cost_usd}})

    async def report(self) -> dict:
        """GET /admin/usage: the store's sums, keys named, and the totals."""
        usage = await self.store.usage()
        names = {k.id: k.name for k in await self.store.list_keys()}
        for key_id, row in usage["keys"].items():
            row["name"] = names.get(key_id, key_id)
        total = {f: sum(row[f] for row in usage["experts"].values()) for f in ("requests", "prompt_tokens", "completion_tokens", "cost_usd")}
        return {"object": "usage", **usage, "total": total}
