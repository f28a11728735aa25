"""Sources into the pipeline: every source pumps its batches into one bounded queue; the intake
feeds them to the pipeline, dispatched by type, and hands the events to `sink`. With no data it
sleeps until the pipeline's next deadline (no polling: an empty store sleeps until a radio
delivers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from drivers.source import Batch, Source
from drivers.trace.reader import SightingBlock
from gateway.clock import Clock
from gateway.events import WireEvent
from gateway.pipeline import TICK_S, Pipeline

log = logging.getLogger(__name__)

QUEUE_BATCHES = 64


class Intake:
    def __init__(
        self,
        sources: list[Source],
        pipeline: Pipeline,
        sink: Callable[[list[WireEvent]], None],
        clock: Clock,
    ) -> None:
        self._sources = sources
        self._pipeline = pipeline
        self._sink = sink
        self._clock = clock
        self._real = clock.real()  # the watchdog's clock (the input's may run N x faster)
        start = self._real.mono()
        # sources that hold readings back to put them in order (receiver clocks) say up to
        # when they have handed everything on: the input's "now" never overtakes held readings
        self._marks = [m for m in (getattr(s, "watermark", None) for s in sources) if m]
        # with networked sources a tick is the data's (at the first reading past it, as in
        # replay: where it falls must not depend on when a batch was handed on); the clock
        # ticks only after a whole tick of silence
        self._grace = TICK_S if self._marks else 0.0
        self.last_delivery: dict[str, float] = {s.name: start for s in sources if s.live}
        self.done = asyncio.Event()  # every source ended and the pipeline finished
        self._finished = False
        self._reopen: dict[str, asyncio.Event] = {}  # live source -> reopen it (`rescan`)

    async def run(self) -> None:
        queue: asyncio.Queue[tuple[Source, Batch | SightingBlock] | Source] = asyncio.Queue(
            maxsize=QUEUE_BATCHES
        )

        async def feed(src: Source) -> None:
            async for batch in src.batches():
                await queue.put((src, batch))

        async def pump(src: Source) -> None:
            try:
                while True:
                    reopen = self._reopen[src.name] = asyncio.Event()
                    inner = asyncio.create_task(feed(src), name=f"read {src.name}")
                    ask = asyncio.create_task(reopen.wait())
                    try:
                        await asyncio.wait([inner, ask], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        ask.cancel()
                        if not inner.done():
                            inner.cancel()
                            await asyncio.gather(inner, return_exceptions=True)
                    if not reopen.is_set():
                        inner.result()  # ended (or failed: raised)
                        return
                    log.info("rescan: source %s reopened", src.name)
            finally:
                self._reopen.pop(src.name, None)
                await queue.put(src)  # this source ended

        pumps = [asyncio.create_task(pump(s), name=f"source {s.name}") for s in self._sources]
        running = len(pumps)
        try:
            while running:
                item = await self._next(queue)
                if item is None:  # the pipeline's deadline came first
                    now, due = self._now(), self._pipeline.next_deadline()
                    if due is not None and now < due + self._grace:  # readings before it held
                        continue
                    self._sink(self._pipeline.advance(now))
                    continue
                if not isinstance(item, tuple):
                    running -= 1
                    _raise_failed(pumps)  # a source that failed (e.g. a radio that stays silent)
                    continue
                src, batch = item
                if isinstance(batch, SightingBlock):
                    self._sink(self._pipeline.feed_block(batch))
                else:
                    self.last_delivery[src.name] = self._real.mono()
                    self._sink(self._pipeline.feed(batch))
            _raise_failed(pumps)
            self.finish()
            self.done.set()
            await asyncio.Event().wait()  # sources ended: keep delivering until stopped / drained
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _next(
        self, queue: asyncio.Queue[tuple[Source, Batch | SightingBlock] | Source]
    ) -> tuple[Source, Batch | SightingBlock] | Source | None:
        deadline = self._pipeline.next_deadline() if self._pipeline.live else None
        now = self._now()
        if deadline is not None:
            deadline += self._grace
        delay = None if deadline is None else max(0.0, deadline - now) / self._clock.speed
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the queue delivers (a SIGTERM lost right after SIGCONT, when a
            # stopped source delivers its backlog at once)
            async with asyncio.timeout(delay):
                return await queue.get()
        except TimeoutError:
            return None

    def rescan(self) -> list[str]:
        """Close and reopen every live source (a radio scan restarted, a serial port reopened):
        the `rescan` command. Returns their names."""
        names = [s.name for s in self._sources if s.live and s.name in self._reopen]
        for n in names:
            self._reopen[n].set()
        return names

    def _now(self) -> float:
        """The input's clock now, no further than what every source has handed on."""
        now = self._clock.mono()
        return float(min([now, *(m() for m in self._marks)]))

    def finish(self) -> None:
        """Close every open stay (end of input, or shutdown); once."""
        if not self._finished:
            self._finished = True
            self._sink(self._pipeline.finish())


def _raise_failed(pumps: list[asyncio.Task[None]]) -> None:
    for p in pumps:
        if p.done() and not p.cancelled() and p.exception() is not None:
            raise p.exception()  # type: ignore[misc]
