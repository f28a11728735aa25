"""The gateway's state for people and fleets: the retained status message (also the last will,
`online: false`), the state notes `shelfgate status` reads from the outbox, and the systemd
watchdog, fed only while the gateway is healthy."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from gateway import __version__, sdnotify
from gateway.clock import Clock
from gateway.events import EVENT_SCHEMA
from gateway.mqtt.link import MqttLink

from .publisher import Publisher, Topics
from .store import OutboxWorker

log = logging.getLogger(__name__)

STATUS_EVERY_S = 30.0


def status_payload(
    topics: Topics,
    clock: Clock,
    online: bool,
    stats: dict[str, Any],
    active_tags: int,
    offers: dict[str, Any],
    health: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The retained status message (config/schemas/status.schema.json). `health`: "receivers",
    "mqtt" and "config" (what a fleet dashboard reads, the same as /metrics); `extra`: optional
    members (`network_receivers`, `group`)."""
    return orjson.dumps(
        {
            "schema": EVENT_SCHEMA,
            "store": topics.store,
            "gateway": topics.gateway,
            "online": online,
            "version": __version__,
            "time": round(clock.wall(), 3),
            "clock_synced": clock.synced(),
            "backlog": stats.get("backlog", 0),
            "oldest_age_s": stats.get("oldest_age_s"),
            "last_acked_seq": stats.get("last_acked_seq", 0),
            "drops": stats.get("drops", {}),
            "dead_letter": stats.get("dead_letter", 0),
            "alerts": stats.get("alerts", []),
            "active_tags": active_tags,
            "offers": offers,
            **(health or {}),
            **(extra or {}),
        }
    )


class StatusReporter:
    def __init__(
        self,
        store: OutboxWorker,
        link: MqttLink,
        publisher: Publisher,
        topics: Topics,
        clock: Clock,
        broker: str,
        active_tags: Callable[[], int],
        offers: Callable[[], dict[str, Any]],
        live_alerts: Callable[[], list[str]] = list,
        receivers: Callable[[], dict[str, Any]] = dict,
        config: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._store = store
        self._link = link
        self._publisher = publisher
        self._topics = topics
        self._clock = clock
        self._broker = broker
        self._active_tags = active_tags
        self._offers = offers
        self._live_alerts = live_alerts  # alerts held in memory (a full disk cannot store them)
        self._receivers = receivers
        self._config = config
        self.stats: dict[str, Any] = {}
        self._since: float | None = None  # wall time the link came up (or went down)
        self._state = "starting"
        self._error: dict[str, Any] | None = None  # the last failed connection attempt
        # optional members, each from its own service (networked receivers' counters, group)
        self.extra: list[Callable[[], dict[str, Any]]] = []

    def payload(self, online: bool) -> bytes:
        stats = dict(self.stats)
        stats["alerts"] = [*stats.get("alerts", []), *self._live_alerts()]
        extra = {k: v for get in self.extra for k, v in get().items()}
        return status_payload(
            self._topics,
            self._clock,
            online,
            stats,
            self._active_tags(),
            self._offers(),
            self.health(),
            extra,
        )

    def health(self) -> dict[str, Any]:
        """Per receiver, the link, the configuration in force."""
        out: dict[str, Any] = {
            "receivers": self._receivers(),
            "mqtt": {
                "connected": self._publisher.connected,
                "since": None if self._since is None else round(self._since, 3),
                "broker": self._broker,
                "last_error": self._error,
            },
        }
        if self._config is not None:
            out["config"] = self._config()
        return out

    async def publish(self, online: bool = True) -> None:
        self.stats = await self._store.do(lambda o: o.stats())
        try:
            await self.note("connected" if self._publisher.connected else "disconnected")
        except sqlite3.OperationalError as e:  # a full disk: the status message still goes out
            log.warning("cannot note the state in the outbox: %s", e)
        if self._publisher.connected:
            self._link.publish(self._topics.status, self.payload(online), qos=1, retain=True)

    async def note(self, state: str) -> None:
        """The link's state for `shelfgate status`; 'since' changes only when the state does."""
        if state != self._state or self._since is None:
            self._state, self._since = state, self._clock.wall()
        meta = {
            "mqtt_state": state,
            "mqtt_since": self._since,
            "broker": self._broker,
            "pid": os.getpid(),
            "version": __version__,
            "active_tags": self._active_tags(),
            "mqtt_error": self._error,
            **{k: v for k, v in self.health().items() if k != "mqtt"},
        }
        await self._store.do(lambda o: o.set_meta(meta))

    def last_error(self) -> str | None:
        return None if self._error is None else str(self._error["reason"])

    async def note_error(self, reason: str) -> None:
        """A connection attempt failed: kept for `shelfgate status` (why is it not connected?)."""
        self._error = {"reason": reason, "time": round(self._clock.wall(), 3)}
        await self.note("disconnected")

    async def run(self, every_s: float = STATUS_EVERY_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.publish(True)


class Watchdog:
    """Fed only while healthy: the event loop runs (we are here), the outbox thread answers, and
    every live source delivered something (any advertisement, tag or not: an empty store at
    night is healthy) within `silence_s`. A hung loop, a wedged writer or a dead radio stops the
    feeding, and systemd restarts the service."""

    def __init__(
        self,
        store: OutboxWorker,
        last_delivery: Callable[[], dict[str, float]],
        clock: Clock,
        silence_s: float,
    ) -> None:
        self._store = store
        self.silence_s = silence_s
        self._last_delivery = last_delivery
        self._clock = clock
        self.interval_s = sdnotify.watchdog_interval_s()

    async def run(self) -> None:
        assert self.interval_s is not None, "only under systemd's watchdog"
        while True:
            await asyncio.sleep(self.interval_s)
            reason = await self.unhealthy()
            if reason is not None:
                log.error("%s: not feeding the systemd watchdog", reason)
                continue
            sdnotify.notify("WATCHDOG=1")

    async def unhealthy(self) -> str | None:
        try:
            async with asyncio.timeout(10.0):  # not wait_for: see Committer.run
                await self._store.do(lambda o: o.stats())
        except (TimeoutError, sqlite3.Error) as e:
            return f"outbox not answering ({e or 'timeout'})"
        now = self._clock.mono()
        silent = [n for n, t in self._last_delivery().items() if now - t > self.silence_s]
        if silent:
            return f"no data from {', '.join(silent)} for {self.silence_s:.0f} s"
        return None
