"""Sources for the daemon: the simulated store in real time, and a recorded trace."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import islice

from positioning.errors import InputError
from positioning.layout import Layout
from positioning.storesim import SimParams, StoreSimulation

from .base import Sighting, SourceUri
from .replay import TraceStats, read_sightings

STEP_S = 0.5


class SimSource:
    """The simulated store advertising in real time, stamped with the monotonic clock; ends
    after `duration` sim seconds if given. `speed` > 1 runs the store's clock faster than the
    wall clock (demos, tests): its timestamps then run ahead of real time."""

    live = True

    def __init__(self, layout: Layout, uri: SourceUri, mono: Callable[[], float]) -> None:
        p = uri.params
        try:
            self.speed = float(p.get("speed", "1"))
            duration = p.get("duration")
            self.duration = float(duration) if duration is not None else None
            params = SimParams(
                shoppers=int(p.get("shoppers", "20")),
                devices=int(p.get("devices", "40")),
                seed=int(p.get("seed", "1")),
                horizon_s=(self.duration or 4 * 3600.0) + 600.0,
            )
        except ValueError as e:
            raise InputError(f"sim:{uri.path}", "parameters", f"expected numbers ({e})") from None
        self.sim = StoreSimulation(layout, params)
        self.name = f"sim:{uri.path}"
        self._mono = mono

    async def batches(self) -> AsyncIterator[list[Sighting]]:
        start = self._mono()
        t = 0.0
        tags = [p.tag for p in self.sim.persons]
        while self.duration is None or t < self.duration:
            t1 = t + STEP_S * self.speed
            if t1 >= self.sim.p.horizon_s - 600.0:
                # past the generated horizon: a new simulated day with the same store
                self.sim = StoreSimulation(
                    self.sim.layout,
                    dataclasses.replace(self.sim.p, seed=self.sim.p.seed + 1),
                )
                start, t, t1 = self._mono(), 0.0, STEP_S * self.speed
            ch = self.sim.chunk(t, t1)
            if len(tags) != len(self.sim.persons):
                tags = [p.tag for p in self.sim.persons]
            base = start
            out = [
                (tag, rx, float(rssi), base + ts)
                for ts, rx, pid, rssi in zip(
                    ch.t.tolist(), ch.rx.tolist(), ch.person.tolist(), ch.rssi.tolist(), strict=True
                )
                if (tag := tags[pid]) is not None
            ]
            t = t1
            wait = start + t / self.speed - self._mono()
            if wait > 0:
                await asyncio.sleep(wait)
            if out:
                yield out


class ReplaySource:
    """A recorded trace, as fast as the pipeline takes it, on the trace's own time."""

    live = False
    BATCH = 4000

    def __init__(
        self, uri: SourceUri, rx_index: dict[str, int], registered: dict[str, str]
    ) -> None:
        self.name = f"replay:{uri.path}"
        self.path = uri.path
        self.stats = TraceStats()
        self._rx_index = rx_index
        self._registered = registered

    async def batches(self) -> AsyncIterator[list[Sighting]]:
        it: Iterator[Sighting] = read_sightings(
            self.path, self._rx_index, self.stats, self._registered
        )
        loop = asyncio.get_running_loop()
        while True:
            batch = await loop.run_in_executor(None, lambda: list(islice(it, self.BATCH)))
            if not batch:
                return
            yield batch
