"""The group commit loses nothing that arrives while a commit runs: the pipeline keeps adding
events while the outbox thread writes, and the timer's commit, a drain's and shutdown's may
overlap. (Found by a flaky restart test: a dwell ending during a commit never reached the
outbox.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.clock import Clock
from gateway.config import OutboxConfig
from gateway.events import WireEvent
from gateway.outbox import Outbox
from gateway.services.committer import Committer
from gateway.services.store import OutboxWorker

T = TypeVar("T")


class GatedStore(OutboxWorker):
    """The real outbox thread, but each call waits for `gate` (a commit held in flight)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, 1 << 30, Clock())
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def do(self, fn: Callable[[Outbox], T]) -> T:
        self.entered.set()
        await self.gate.wait()
        return await super().do(fn)


def events(lo: int, hi: int) -> list[WireEvent]:
    return [
        WireEvent("dwell", f"e-{i}", "s", "g", f"p:{i}", "z", 1.0e9 + i, 1.0e9 + i + 60, True)
        for i in range(lo, hi)
    ]


async def stored_ids(store: OutboxWorker) -> list[str]:
    rows = await store.do(lambda o: o.conn.execute("SELECT event_id FROM events").fetchall())
    return sorted(r[0] for r in rows)


async def commit_in_flight(tmp_path: Path) -> tuple[GatedStore, Committer, asyncio.Task[None]]:
    """A committer whose commit of ten events is held on the outbox thread."""
    store = GatedStore(tmp_path / "o.db")
    await store.open()
    c = Committer(store, OutboxConfig(), on_committed=lambda urgent: None)
    c.add(events(0, 10))
    store.gate.clear()
    store.entered.clear()
    first = asyncio.create_task(c.flush())
    await store.entered.wait()
    return store, c, first


def test_events_added_during_a_commit_are_committed_by_the_next(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        store, c, first = await commit_in_flight(tmp_path)
        c.add(events(10, 20))  # a dwell ends meanwhile
        store.gate.set()
        await first
        await c.flush()
        ids = await stored_ids(store)
        await store.close()
        return ids

    assert asyncio.run(scenario()) == sorted(f"e-{i}" for i in range(20))


def test_overlapping_flushes_commit_everything_once(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], int]:
        store, c, timer = await commit_in_flight(tmp_path)  # the periodic commit
        c.add(events(10, 15))
        drain = asyncio.create_task(c.flush())  # a drain's (or shutdown's) commit, at once
        await asyncio.sleep(0)
        c.add(events(15, 18))
        store.gate.set()
        await asyncio.gather(timer, drain)
        await c.flush()
        ids = await stored_ids(store)
        await store.close()
        return ids, c.committed

    ids, committed = asyncio.run(scenario())
    assert ids == sorted(f"e-{i}" for i in range(18)) and committed == 18
