"""`shelfgate run --role node`: a second Pi (or third) that forwards what its radios hear to
the positioning gateway over MQTT, batched and compact (drivers/network/node.py), instead of
deciding zones itself. Its sources are its local radios (`bluez:`, `serial:`, `sim:`); its
`[gateway] id` is the node's id; it publishes on `<prefix>/<store>/nodes/<id>/adv` (QoS 0: a
late advertisement is worth nothing) and a retained `.../status` (`{"online", "clock_synced",
...}`, the last will `online: false`). No outbox, no pipeline, no SQLite: a node keeps nothing.

Each batch carries the node's clocks (monotonic, wall, synced), and each advertisement its age
on the node's monotonic clock, so the gateway places it in time without trusting the node's
wall clock (or with it, `clock=receiver`, when the node says it is synchronised)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal

import orjson

from drivers.advertisement import Advertisement
from drivers.network.node import NodeClock, encode_batch
from drivers.network.subscriber import Subscriber
from drivers.registry import open_sources
from drivers.source import SourceContext, SourceSpec
from positioning.layout import Layout
from positioning.tags import TagResolver

from . import sdnotify
from .clock import Clock
from .config import GatewayConfig

log = logging.getLogger(__name__)

BATCH_S = 0.1  # a batch at most this often ...
BATCH_MAX = 2000  # ... or at this many advertisements
PENDING_MAX = 50_000  # not connected: the oldest beyond this are dropped (counted)
STATUS_EVERY_S = 30.0


class Node:
    def __init__(
        self,
        cfg: GatewayConfig,
        layout: Layout,
        sources: tuple[str | SourceSpec, ...],
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.id = cfg.gateway.id
        store = cfg.gateway.store or layout.store_id
        ctx = SourceContext(layout, self.clock.mono, TagResolver(), workers=0, wall=self.clock.wall)
        self.sources = open_sources(sources, ctx)
        base = f"{cfg.mqtt.topic_prefix}/{store}/nodes/{self.id}"
        self.topic, self.status_topic = f"{base}/adv", f"{base}/status"
        self.boot = secrets.token_hex(4)
        self.seq = 0
        self.heard = 0  # advertisements the radios delivered
        self.sent = 0  # advertisements published
        self.dropped = 0  # advertisements not published (not connected, too many pending)
        self.skipped = 0  # readings that are not advertisements (UWB fixes stay local)
        settings = cfg.mqtt.link_settings(store, self.id, f"{cfg.path}: mqtt.broker")
        self.link = Subscriber(
            settings, "", lambda *_: None, self._on_state, f"node {self.id}",
            will=(self.status_topic, self._status(False)),
        )  # fmt: skip
        self._pending: list[Advertisement] = []
        self._connected = asyncio.Event()

    def _status(self, online: bool) -> bytes:
        c = self.clock
        return orjson.dumps(
            {"node": self.id, "online": online, "boot": self.boot, "time": round(c.wall(), 3),
             "clock_synced": c.synced(), "seq": self.seq, "heard": self.heard,
             "sent": self.sent, "dropped": self.dropped}
        )  # fmt: skip

    def _on_state(self, connected: bool) -> None:  # the network thread
        loop = self._loop
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._connected.set if connected else self._connected.clear)

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, stop.set)
        self.link.start()
        sdnotify.notify("READY=1")
        pumps = [asyncio.create_task(self._pump(s)) for s in self.sources]
        tasks = [*pumps, asyncio.create_task(self._flush()), asyncio.create_task(self._report())]
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not waiter and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in [waiter, *tasks]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._publish_batch()
            self.link.publish(self.status_topic, self._status(False), qos=1, retain=True)
            await self._loop.run_in_executor(None, self.link.stop)
            log.info("node %s stopped: %d advertisements sent", self.id, self.sent)
        return 0

    async def _pump(self, src: object) -> None:
        async for batch in src.batches():  # type: ignore[attr-defined]
            for r in batch:
                if type(r) is Advertisement:
                    self._pending.append(r)
                    self.heard += 1
                else:
                    self.skipped += 1
            if len(self._pending) >= BATCH_MAX:
                self._publish_batch()

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(BATCH_S)
            self._publish_batch()

    async def _report(self) -> None:
        while True:
            await self._connected.wait()
            self.link.publish(self.status_topic, self._status(True), qos=1, retain=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_EVERY_S):
                    while self._connected.is_set():
                        await asyncio.sleep(1.0)

    def _publish_batch(self) -> None:
        pending = self._pending
        if not pending:
            return
        if not self._connected.is_set():  # hold a while (a broker restart), then drop the oldest
            if len(pending) > PENDING_MAX:
                self.dropped += len(pending) - PENDING_MAX
                del pending[: len(pending) - PENDING_MAX]
            return
        self._pending = []
        c = self.clock
        for i in range(0, len(pending), BATCH_MAX):
            chunk = pending[i : i + BATCH_MAX]
            self.seq += 1
            sent = NodeClock(c.mono(), c.wall(), c.synced())
            if self.link.publish(
                self.topic, encode_batch(self.id, self.boot, self.seq, chunk, sent)
            ):
                self.sent += len(chunk)
            else:
                self.dropped += len(chunk)


def run_node(cfg: GatewayConfig, layout: Layout, sources: tuple[str | SourceSpec, ...]) -> int:
    async def main() -> int:
        return await Node(cfg, layout, sources).run()

    return asyncio.run(main())
