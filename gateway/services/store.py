"""The outbox's own thread: every SQLite call runs there, so there is exactly one writer and the
event loop never waits on the disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.clock import Clock
from gateway.outbox import Outbox

T = TypeVar("T")


class OutboxWorker:
    def __init__(self, path: Path, quota_bytes: int, clock: Clock) -> None:
        self.path = path
        self._quota = quota_bytes
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._outbox: Outbox | None = None

    async def open(self) -> None:
        self._outbox = await self._run(lambda: Outbox(self.path, self._quota, self._clock))

    async def do(self, fn: Callable[[Outbox], T]) -> T:
        """`fn(outbox)` on the outbox thread."""
        outbox = self._outbox
        if outbox is None:
            raise RuntimeError("the outbox is not open")
        return await self._run(lambda: fn(outbox))

    async def close(self) -> None:
        if self._outbox is not None:
            outbox, self._outbox = self._outbox, None
            await self._run(outbox.close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
