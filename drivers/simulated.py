"""The simulated store advertising in real time (`sim:layout.toml?shoppers=20&seed=1`): what
`scripts/run` and the tests use instead of radios: the advertisements of the simulated tags,
stamped with the monotonic clock (the simulated phones and headphones that are never tags are
left out: at `speed=80` they would cost more CPU than the whole pipeline and carry nothing).

Parameters: shoppers, devices, seed, duration (sim seconds, then the source ends), speed (> 1
runs the store's clock faster than the wall clock, for demos and tests: its timestamps then run
ahead of real time).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping

import orjson

from positioning.errors import InputError
from positioning.storesim import SimParams, StoreSimulation

from .advertisement import Advertisement
from .source import SourceContext, SourceUri

STEP_S = 0.5
DAY_S = 1800.0  # without a duration: a simulated "day" this long, then the next one (new seed)
Frames = tuple[Mapping[int, bytes], Mapping[str, bytes]]


class SimSource:
    live = True
    feeds = None

    def __init__(self, uri: SourceUri, ctx: SourceContext) -> None:
        self.speed = uri.number("speed", 1.0)
        duration = uri.params.get("duration")
        self.duration = uri.number("duration", 0.0) if duration is not None else None
        if self.speed <= 0:
            raise InputError(uri.text, "speed", "expected a positive factor")
        self._params = SimParams(
            shoppers=uri.integer("shoppers", 20),
            devices=uri.integer("devices", 40),
            seed=uri.integer("seed", 1),
            horizon_s=(self.duration or DAY_S) + 600.0,
        )
        self._layout = ctx.layout
        self.name = uri.text
        self._mono = ctx.mono
        self._receivers = ctx.receivers
        self._frames: dict[str, Frames] = {}

    async def batches(self) -> AsyncIterator[list[Advertisement]]:
        loop = asyncio.get_running_loop()
        params = self._params
        start = self._mono()
        t = 0.0
        sim = None
        while self.duration is None or t < self.duration:
            t1 = t + STEP_S * self.speed
            if sim is None or t1 >= sim.p.horizon_s - 600.0:
                # the store (and after each simulated day a new one, the next seed), made on a
                # worker thread: it takes a moment
                if sim is not None:
                    params = dataclasses.replace(sim.p, seed=sim.p.seed + 1)
                try:
                    sim = await loop.run_in_executor(None, StoreSimulation, self._layout, params)
                except ValueError as e:
                    raise InputError(self.name, "parameters", str(e)) from None
                start, t, t1 = self._mono(), 0.0, STEP_S * self.speed
            # the simulation's arithmetic on a worker thread: the event loop stays free
            out = await loop.run_in_executor(None, self._advertisements, sim, t, t1, start)
            t = t1
            wait = start + t / self.speed - self._mono()
            if wait > 0:
                await asyncio.sleep(wait)
            if out:
                yield out

    def _advertisements(
        self, sim: StoreSimulation, t0: float, t1: float, base: float
    ) -> list[Advertisement]:
        ch = sim.chunk(t0, t1)
        rxs, persons = self._receivers, sim.persons
        out = []
        for ts, rx, pid, rssi in zip(
            ch.t.tolist(), ch.rx.tolist(), ch.person.tolist(), ch.rssi.tolist(), strict=True
        ):
            if persons[pid].tag is None:
                continue
            mfg, svc = self._decoded(sim.payload(pid, ts))
            out.append(Advertisement(rxs[rx], sim.address(pid, ts), int(rssi), mfg, svc, base + ts))
        return out

    def _decoded(self, members: str) -> Frames:
        """The trace-line members ("mfg": {...}, "svc": {...}) as bytes, decoded once each."""
        got = self._frames.get(members)
        if got is None:
            if len(self._frames) > 10_000:
                self._frames.clear()
            obj = orjson.loads("{" + members + "}")
            mfg = {int(k): bytes.fromhex(v) for k, v in obj.get("mfg", {}).items()}
            svc = {k: bytes.fromhex(v) for k, v in obj.get("svc", {}).items()}
            got = self._frames[members] = (mfg, svc)
        return got
