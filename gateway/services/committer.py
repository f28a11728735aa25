"""Group commit of wire events into the outbox: every `commit_interval_s` or `commit_max_events`,
and at once for an urgent event (an offer for a shopper standing at the shelf), which is still
durable before it is published.

A full disk does not stop the gateway: the events stay in memory (bounded: past MAX_PENDING the
least valuable go first, counted), the outbox gives back what it can, an alert is raised, and the
commit is retried until space returns; then the alert clears by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable

from gateway.config import OutboxConfig
from gateway.events import WireEvent
from gateway.outbox import DROP_ORDER, disk_full
from gateway.stays import SuspendedStay, signature

from .store import OutboxWorker

log = logging.getLogger(__name__)

MAX_PENDING = 20_000  # events held in memory while the disk is full (~10 MB)
RETRY_S = 2.0


class Committer:
    def __init__(
        self,
        store: OutboxWorker,
        cfg: OutboxConfig,
        on_committed: Callable[[bool], None],
        on_alert: Callable[[], None] = lambda: None,
        stays: Callable[[], list[SuspendedStay]] = list,
    ) -> None:
        """`on_committed(urgent)` runs after each commit that added events; `on_alert` when the
        disk-full alert is raised or cleared."""
        self._store = store
        self._cfg = cfg
        self._on_committed = on_committed
        self._on_alert = on_alert
        self._stays = stays  # the open stays, kept with every commit (gateway.stays)
        self._saved_stays: set[tuple[object, ...]] = set()
        self._pending: list[WireEvent] = []
        self._urgent = False
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # one commit at a time (the timer, a drain, shutdown)
        self._dropped: Counter[str] = Counter()  # dropped from memory, not yet counted on disk
        self.committed = 0
        self.alert: str | None = None  # "disk full ...", while commits fail for space

    def add(self, events: list[WireEvent]) -> None:
        if not events:
            return
        self._pending += events
        if len(self._pending) > MAX_PENDING:
            self._shed()
        if any(e.urgent for e in events):
            self._urgent = True
            self._wake.set()
        elif len(self._pending) >= self._cfg.commit_max_events:
            self._wake.set()

    async def run(self) -> None:
        while True:
            wait = RETRY_S if self.alert else self._cfg.commit_interval_s
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the event is set (a lost SIGTERM)
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        stays = self._stays()
        if not self._pending:
            if signature(stays) != self._saved_stays or self.alert:  # (the alert: a retry)
                try:
                    await self._store.do(lambda o: o.save_stays(stays))
                except sqlite3.OperationalError as e:
                    if not disk_full(e):
                        raise
                    await self._disk_full(e)
                    return
                self._saved_stays = signature(stays)
                await self._recovered()
            return
        # a copy: the pipeline keeps adding while the commit runs on the outbox thread, and only
        # what this commit holds may leave the list afterwards
        batch = list(self._pending)
        bodies = [e.body() for e in batch]
        triggers = [e.trigger for e in batch if e.trigger is not None]
        try:
            seqs = await self._store.do(lambda o: o.append(bodies, triggers, stays))
        except sqlite3.OperationalError as e:
            if not disk_full(e):
                raise
            await self._disk_full(e)
            return
        done = {id(e) for e in batch}  # by identity: _shed may have thinned the list meanwhile
        self._pending = [e for e in self._pending if id(e) not in done]
        self._saved_stays = signature(stays)
        urgent, self._urgent = self._urgent, False
        await self._recovered()
        if seqs:
            self.committed += len(seqs)
            log.debug("committed seq %d..%d", seqs[0], seqs[-1])
            self._on_committed(urgent)

    async def _disk_full(self, e: sqlite3.Error) -> None:
        first = self.alert is None
        self.alert = (
            f"disk_full: the outbox cannot commit ({e}); {len(self._pending)} events held in memory"
        )
        if first:
            log.error("%s; retrying every %.0f s", self.alert, RETRY_S)
            self._on_alert()
        with contextlib.suppress(sqlite3.Error):
            dropped = await self._store.do(lambda o: o.make_room())
            if dropped:
                log.warning("disk full: dropped %d queued dwell_threshold events", dropped)

    async def _recovered(self) -> None:
        if self._dropped:
            drops = dict(self._dropped)
            self._dropped.clear()
            with contextlib.suppress(sqlite3.Error):
                await self._store.do(lambda o: o.count_drops(drops))
        if self.alert is not None:
            self.alert = None
            log.warning("the outbox commits again: disk-full alert cleared")
            self._on_alert()

    def _shed(self) -> None:
        """Memory bound while the disk is full: the least valuable events go first (as the
        quota's overflow policy orders them), oldest first, each counted."""
        excess = len(self._pending) - MAX_PENDING
        for kind in DROP_ORDER:
            if excess <= 0:
                break
            keep: list[WireEvent] = []
            for ev in self._pending:
                if excess > 0 and ev.type == kind:
                    excess -= 1
                    self._dropped[kind] += 1
                else:
                    keep.append(ev)
            self._pending = keep
