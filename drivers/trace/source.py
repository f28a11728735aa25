"""A recorded trace as a source (`replay:trace.jsonl[?speed=N]`): on the trace's own time, as
fast as the pipeline takes it, or at N x the trace's pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from drivers.source import SourceContext, SourceUri
from positioning.errors import InputError

from .parallel import read_blocks_parallel
from .reader import SightingBlock, TraceStats

PACE_SLICE_S = 0.25  # at a given speed, blocks are cut into slices of this many wall seconds


class ReplaySource:
    live = False

    def __init__(self, uri: SourceUri, ctx: SourceContext) -> None:
        self.name = uri.text
        self.path = uri.path
        if not Path(self.path).exists():
            raise InputError(uri.text, "", "the trace file does not exist")
        self.speed = uri.number("speed", 0.0)
        if self.speed < 0:
            raise InputError(uri.text, "speed", "expected a positive factor, e.g. speed=10")
        self.stats = TraceStats()
        self._ctx = ctx
        self._rx_index = ctx.layout.receiver_index()

    async def batches(self) -> AsyncIterator[SightingBlock]:
        blocks = read_blocks_parallel(
            self.path, self._rx_index, self.stats, self._ctx.resolver, self._ctx.workers
        )
        it = self._paced(blocks) if self.speed > 0 else blocks
        loop = asyncio.get_running_loop()
        t0: float | None = None
        start = time.monotonic()
        while True:
            blk = await loop.run_in_executor(None, next, it, None)
            if blk is None:
                return
            if self.speed > 0:
                t0 = float(blk.t[0]) if t0 is None else t0
                wait = start + (float(blk.t[0]) - t0) / self.speed - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            yield blk

    def _paced(self, blocks: Iterator[SightingBlock]) -> Iterator[SightingBlock]:
        span = PACE_SLICE_S * self.speed
        for blk in blocks:
            lo = 0
            while lo < len(blk):
                hi = int(blk.t.searchsorted(blk.t[lo] + span, side="left"))
                hi = max(hi, lo + 1)
                yield SightingBlock(blk.tags[lo:hi], blk.rx[lo:hi], blk.rssi[lo:hi], blk.t[lo:hi])
                lo = hi
