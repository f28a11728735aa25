"""Publishing the outbox: a window of unacknowledged messages (never above the broker's Receive
Maximum), each a batch of events claimed from the outbox, acknowledged there only when the
broker's PUBACK comes back. The window and its bookkeeping live here and nowhere else.

A backlog drains in seq order while live events keep flowing: claims alternate between the
oldest and the newest queued events; an urgent commit (an offer) is claimed newest-first next.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass

import orjson

from gateway.clock import Clock
from gateway.config import MqttConfig, OutboxConfig
from gateway.events import EVENT_SCHEMA
from gateway.mqtt.link import Connected, Disconnected, MqttLink, Published, Unsent
from gateway.outbox import Row, disk_full

from .store import OutboxWorker

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    store: str
    gateway: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.store}/{self.gateway}"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def config(self) -> str:
        return f"{self.base}/config"

    @property
    def commands(self) -> str:
        return f"{self.base}/commands"

    @property
    def replies(self) -> str:
        return f"{self.base}/replies"

    @property
    def offers(self) -> str:
        return f"{self.prefix}/{self.store}/offers"


class Publisher:
    def __init__(
        self,
        store: OutboxWorker,
        link: MqttLink,
        topics: Topics,
        mqtt: MqttConfig,
        outbox: OutboxConfig,
        clock: Clock,
    ) -> None:
        self._store = store
        self._link = link
        self._topics = topics
        self._mqtt = mqtt
        self._outbox = outbox
        self._clock = clock
        self.connected = False
        self.window = mqtt.max_inflight
        self.max_bytes = MAX_MESSAGE_BYTES
        self.inflight: dict[int, list[int]] = {}  # ticket -> seqs
        self.refused = 0
        self._unrecorded: list[int] = []  # acknowledged, not yet deleted (a full disk)
        self._newest_next = False
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()
        self._bg: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ link events
    def on_connected(self, ev: Connected) -> None:
        self.connected = True
        if not ev.session_present and self.inflight:
            # the broker lost our session (restarted without persistence): the messages in
            # flight will never be acknowledged under their tickets; send their events again
            # (at least once: the backend deduplicates by event_id)
            lost = [seq for seqs in self.inflight.values() for seq in seqs]
            self.inflight.clear()
            task = asyncio.get_running_loop().create_task(self._release(lost))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)
        self.window = max(1, min(self._mqtt.max_inflight, ev.receive_maximum))
        limit = ev.maximum_packet_size or MAX_MESSAGE_BYTES
        self.max_bytes = max(1024, min(MAX_MESSAGE_BYTES, limit - 512))
        self.kick()

    def on_disconnected(self, ev: Disconnected) -> None:
        self.connected = False  # in-flight messages stay: paho resends them on reconnect

    def on_settled(self, ev: Published | Unsent) -> None:
        seqs = self.inflight.pop(ev.ticket, None)
        if seqs is None:
            return  # a status message
        task = asyncio.get_running_loop().create_task(self._settle(seqs, ev))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def kick(self, urgent: bool = False) -> None:
        if urgent:
            self._newest_next = True
        self._wake.set()

    # ------------------------------------------------------------------ work
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.idle.clear()
            while self.connected and len(self.inflight) < self.window:
                if not await self._publish_next():
                    break
            if not self.inflight:
                self.idle.set()

    async def _publish_next(self) -> bool:
        newest = self._newest_next
        self._newest_next = not newest
        n, size = self._mqtt.max_batch, self.max_bytes
        rows: list[Row] = await self._store.do(lambda o: o.claim(n, size, newest))
        if not rows:
            rows = await self._store.do(lambda o: o.claim(n, size, not newest))
        if not rows:
            return False
        ticket = self._link.publish(self._topics.events, self._payload(rows), qos=1)
        self.inflight[ticket] = [r.seq for r in rows]
        return True

    async def _settle(self, seqs: list[int], ev: Published | Unsent) -> None:
        if isinstance(ev, Unsent):
            await self._store.do(lambda o: o.release(seqs))
        elif ev.ok:
            self._unrecorded += seqs
            await self._record_acks()
        else:
            self.refused += 1
            limit = self._outbox.max_attempts
            moved = await self._store.do(lambda o: o.refused(seqs, ev.reason, limit))
            log.error(
                "broker refused %d events (%s)%s",
                len(seqs),
                ev.reason,
                f"; {moved} moved to the dead-letter table" if moved else "",
            )
            await asyncio.sleep(min(30.0, 2.0 ** min(self.refused, 5)))
        self.kick()

    async def _release(self, seqs: list[int]) -> None:
        await self._store.do(lambda o: o.release(seqs))
        self.kick()

    async def _record_acks(self) -> None:
        """Acknowledged events leave the outbox; on a full disk even that delete can fail: they
        stay claimed (never resent) and are recorded with the next acknowledgement."""
        seqs, self._unrecorded = self._unrecorded, []
        try:
            await self._store.do(lambda o: o.ack(seqs))
        except sqlite3.OperationalError as e:
            if not disk_full(e):
                raise
            log.warning("cannot record %d acknowledgements yet: %s", len(seqs), e)
            self._unrecorded = seqs + self._unrecorded

    async def wait_acknowledged(self, timeout: float) -> None:
        """Shutdown: give in-flight messages up to `timeout` to be acknowledged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.inflight and self.connected and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)

    def _payload(self, rows: list[Row]) -> bytes:
        head = orjson.dumps(
            {
                "schema": EVENT_SCHEMA,
                "store": self._topics.store,
                "gateway": self._topics.gateway,
                "sent": round(self._clock.wall(), 3),
            }
        )
        return head[:-1] + b',"events":[' + b",".join(r.body for r in rows) + b"]}"
