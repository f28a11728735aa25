"""Group commit of wire events into the outbox: every `commit_interval_s` or `commit_max_events`,
and at once for an urgent event (an offer for a shopper standing at the shelf), which is still
durable before it is published."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gateway.config import OutboxConfig
from gateway.events import WireEvent

from .store import OutboxWorker

log = logging.getLogger(__name__)


class Committer:
    def __init__(
        self,
        store: OutboxWorker,
        cfg: OutboxConfig,
        on_committed: Callable[[bool], None],
    ) -> None:
        """`on_committed(urgent)` runs after each commit that added events."""
        self._store = store
        self._cfg = cfg
        self._on_committed = on_committed
        self._pending: list[WireEvent] = []
        self._urgent = False
        self._wake = asyncio.Event()
        self.committed = 0

    def add(self, events: list[WireEvent]) -> None:
        if not events:
            return
        self._pending += events
        if any(e.urgent for e in events):
            self._urgent = True
            self._wake.set()
        elif len(self._pending) >= self._cfg.commit_max_events:
            self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the event is set (a lost SIGTERM)
                async with asyncio.timeout(self._cfg.commit_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        urgent, self._urgent = self._urgent, False
        bodies = [e.body() for e in batch]
        triggers = [e.trigger for e in batch if e.trigger is not None]
        seqs = await self._store.do(lambda o: o.append(bodies, triggers))
        if seqs:
            self.committed += len(seqs)
            log.debug("committed seq %d..%d", seqs[0], seqs[-1])
            self._on_committed(urgent)
