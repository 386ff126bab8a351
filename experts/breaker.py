"""Per-expert circuit breakers whose state lives in the store, so every replica sees it.

`failures` failed requests in a row open an expert's breaker: requests skip it (the next
expert in the ranking answers) until `cooldown_s` after the last failure. Then it is half-open:
one request (the one that claims the probe in the store, across all replicas) goes through;
its success closes the breaker, its failure opens it for another cooldown.

Reads on the request path use a local copy refreshed every `refresh_s`; failures go to the store
at once (rare), successes only when the local copy says there is something to reset. Breaker
bookkeeping never fails a request: a store error is logged and the request goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from experts.periodic import Periodic

log = logging.getLogger("switchyard.breaker")

State = Literal["closed", "half_open", "open"]
STATE_VALUE: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class BreakerStore(Protocol):
    async def breaker_records(self) -> dict[str, tuple[int, float]]: ...  # name -> (failures in a row, opened_at or 0)
    async def breaker_failure(self, name: str, threshold: int, now: float) -> tuple[int, float]: ...
    async def breaker_reset(self, name: str) -> None: ...
    async def breaker_claim_probe(self, name: str, ttl_s: float) -> bool: ...


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5
    cooldown_s: float = 10.0
    refresh_s: float = 0.5


class Breakers:
    def __init__(
        self, store: BreakerStore, policy: BreakerPolicy = BreakerPolicy(), on_state: Callable[[str, State], None] | None = None
    ) -> None:
        self.store, self.policy, self.on_state = store, policy, on_state
        self._records: dict[str, tuple[int, float]] = {}
        self._loop = Periodic(self.refresh, policy.refresh_s, "breaker refresh", log)
        self.start, self.stop = self._loop.start, self._loop.stop

    def state(self, name: str, now: float | None = None) -> State:
        _, opened_at = self._records.get(name, (0, 0.0))
        if not opened_at:
            return "closed"
        return "open" if (now or time.time()) < opened_at + self.policy.cooldown_s else "half_open"

    async def allow(self, name: str) -> bool:
        state = self.state(name)
        if state == "closed":
            return True
        if state == "open":
            return False
        try:  # half-open: one probe at a time across replicas; a hung probe's claim lapses after a cooldown
            return await self.store.breaker_claim_probe(name, self.policy.cooldown_s)
        except Exception as exc:  # noqa: BLE001
            log.warning("breaker probe claim for %r failed: %s", name, exc)
            return False

    async def failure(self, name: str) -> None:
        before = self.state(name)
        try:
            record = await self.store.breaker_failure(name, self.policy.failures, time.time())
        except Exception as exc:  # noqa: BLE001
            log.warning("breaker failure for %r not recorded: %s", name, exc)
            return
        self._records[name] = record
        if (after := self.state(name)) != before:
            log.warning("breaker for expert %r: %s -> %s after %d failures in a row", name, before, after, record[0])
            self._publish(name, after)

    async def success(self, name: str) -> None:
        if name not in self._records:
            return  # nothing to reset: the common case costs no store call
        try:
            await self.store.breaker_reset(name)
        except Exception as exc:  # noqa: BLE001
            log.warning("breaker reset for %r not recorded: %s", name, exc)
            return
        if self.state(name) != "closed":
            log.warning("breaker for expert %r closed", name)
        self._records.pop(name, None)
        self._publish(name, "closed")

    async def refresh(self) -> None:
        records = await self.store.breaker_records()
        gone = set(self._records) - set(records)
        self._records = records
        for name in gone:
            self._publish(name, "closed")
        now = time.time()
        for name in records:
            self._publish(name, self.state(name, now))

    def _publish(self, name: str, state: State) -> None:
        if self.on_state is not None:
            self.on_state(name, state)

