"""`shelfgate run`: sources -> pipeline -> SQLite outbox -> MQTT, one asyncio application.

Threads: the asyncio loop (sources, pipeline, publisher), one outbox thread (every SQLite call,
so there is exactly one writer), paho's network thread (gateway.mqtt_link), and short-lived
executor threads reading trace files. Data crosses into the loop only through
`call_soon_threadsafe` / `run_in_executor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from drivers.base import PositionFix, Sighting, Source, parse_source_uri
from positioning.errors import InputError
from positioning.frames import tag_id
from positioning.layout import Layout
from positioning.offers import Catalogue, CatalogueError, OfferMatcher, parse_catalogue
from positioning.pathloss import RadioModel
from positioning.tracker import ZoneTracker
from positioning.types import DwellEvent

from . import __version__, sdnotify
from .clock import Clock
from .config import Config
from .events import EVENT_SCHEMA, Identity, dwell_event_body, offer_event_body
from .mqtt_link import (
    Connected,
    Disconnected,
    LinkEvent,
    LinkSettings,
    Message,
    MqttLink,
    Published,
    parse_broker,
)
from .outbox import Outbox, Row
from .pipeline import build_identity, build_tracker, registered_tags

log = logging.getLogger(__name__)
T = TypeVar("T")

STATUS_EVERY_S = 30.0
TICK_S = 1.0
MAX_MESSAGE_BYTES = 64 * 1024
SHUTDOWN_FLUSH_S = 5.0
HISTORY_S = 8 * 86400.0  # offer triggers older than any frequency period are forgotten


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
    def offers(self) -> str:
        return f"{self.prefix}/{self.store}/offers"


@dataclass(slots=True)
class SyncState:
    connected: bool = False
    window: int = 20
    max_bytes: int = MAX_MESSAGE_BYTES
    inflight: dict[int, list[int]] = field(default_factory=dict)  # mid -> seqs
    newest_next: bool = False
    refused: int = 0


class Gateway:
    def __init__(
        self,
        cfg: Config,
        layout: Layout,
        model: RadioModel | None,
        sources: list[str],
        clock: Clock | None = None,
        exit_when_drained: bool = False,
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self.clock = clock or Clock()
        self.exit_when_drained = exit_when_drained
        self.ident: Identity = build_identity(cfg, layout)
        self.tracker: ZoneTracker = build_tracker(layout, cfg, model)
        self.registered = registered_tags(cfg)
        self.source_uris = sources
        m = cfg.values["mqtt"]
        self.topics = Topics(m["topic_prefix"], self.ident.store, self.ident.gateway)
        data_dir = Path(cfg.values["gateway"]["data_dir"])
        self.db_path = data_dir / "outbox.db"
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self.outbox: Outbox | None = None
        self.sync = SyncState(window=m["max_inflight"])
        self._pending: list[dict[str, Any]] = []
        self._pending_triggers: list[tuple[str, str, float]] = []
        self.matcher: OfferMatcher | None = None
        self.offers_state: dict[str, Any] = {"version": None, "rejected": None}
        self._wake = asyncio.Event()
        self._publish_wake = asyncio.Event()
        self._bg: set[asyncio.Task[Any]] = set()
        self._watchdog_s = sdnotify.watchdog_interval_s()
        self._last_intake: float | None = None
        self._stop = asyncio.Event()
        self._sources_done = asyncio.Event()
        self.link: MqttLink | None = None
        self._stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _link_settings(self) -> LinkSettings:
        m = self.cfg.values["mqtt"]
        host, port, tls = parse_broker(
            m["broker"], m["allow_plaintext"], f"{self.cfg.path}: mqtt.broker"
        )
        password = m["password"]
        pf = self.cfg.resolve(m["password_file"])
        if pf is not None:
            password = Path(pf).read_text(encoding="utf-8").strip()
        return LinkSettings(
            host=host,
            port=port,
            tls=tls,
            client_id=m["client_id"] or f"shelfgate-{self.ident.store}-{self.ident.gateway}",
            protocol=m["protocol"],
            username=m["username"],
            password=password,
            ca_file=self.cfg.resolve(m["ca_file"]),
            cert_file=self.cfg.resolve(m["cert_file"]),
            key_file=self.cfg.resolve(m["key_file"]),
            keepalive_s=m["keepalive_s"],
            connect_delay_max_s=m["connect_delay_max_s"],
            backoff_base_s=m["backoff_base_s"],
            backoff_cap_s=m["backoff_cap_s"],
            max_inflight=m["max_inflight"],
        )

    def _tag_of(self, adv: Any) -> str | None:
        """A radio's advertisement -> tag id: its beacon frame, else a registered address."""
        return tag_id(adv.mfg, adv.svc) or self.registered.get(adv.addr.upper())

    def _make_sources(self) -> list[Source]:
        from drivers.live import ReplaySource, SimSource

        out: list[Source] = []
        radios: dict[str, str] = {}
        for uri in self.source_uris:
            su = parse_source_uri(uri)
            rx = su.params.get("rx")
            uwb = su.params.get("protocol") == "dwm1001"
            if su.kind in ("serial", "bluez") and rx is not None and not uwb:
                # one radio per receiver id: two radios on one id would count advertisements twice
                if rx in radios:
                    raise InputError(uri, "rx", f"receiver {rx} is already fed by {radios[rx]}")
                radios[rx] = uri
            if su.kind == "sim":
                out.append(SimSource(self.layout, su, self.clock.mono))
            elif su.kind == "serial":
                from drivers.serial_source import SerialSource

                out.append(SerialSource(su, self.tracker.rx_index, self.clock.mono, self._tag_of))
            elif su.kind == "bluez":
                from drivers.bluez_source import BluezSource

                out.append(BluezSource(su, self.tracker.rx_index, self.clock.mono, self._tag_of))
            elif su.kind == "replay":
                if not Path(su.path).exists():
                    raise InputError(uri, "", "trace file not found")
                out.append(ReplaySource(su, self.tracker.rx_index, self.registered))
        return out

    # ------------------------------------------------------------------ run
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        o = self.cfg.values["outbox"]
        self.outbox = await self.db(
            Outbox, self.db_path, int(o["quota_mb"] * 1024 * 1024), self.clock
        )
        self._stats = await self.db(self.outbox.stats)
        if self._stats["alerts"]:
            for a in self._stats["alerts"]:
                log.error("alert: %s", a)
        await self._load_cached_catalogue()
        sources = self._make_sources()
        self.link = MqttLink(
            self._link_settings(),
            loop,
            self._on_link_event,
            will=(self.topics.status, self._status_payload(False)),
            subscriptions=(self.topics.offers,),
        )
        self.link.start()
        sdnotify.notify("READY=1")
        tasks = [
            asyncio.create_task(self._intake(sources), name="intake"),
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._publisher(), name="publisher"),
            asyncio.create_task(self._status_loop(), name="status"),
        ]
        stop_waiter = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop_waiter and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            await self._shutdown(tasks)
        return 0

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Stop intake, commit what the pipeline holds, give in-flight publishes a bounded time."""
        tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await tasks[0]
        sdnotify.notify("STOPPING=1")
        if not self.exit_when_drained:
            self._finish_pipeline()
        await self._commit()
        deadline = time.monotonic() + SHUTDOWN_FLUSH_S
        while self.sync.inflight and self.sync.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for t in [*tasks[1:], *self._bg]:
            t.cancel()
        for t in [*tasks[1:], *self._bg]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.link is not None:
            if self.link.connected:
                self.link.publish(
                    self.topics.status, self._status_payload(False), qos=1, retain=True
                )
                await asyncio.sleep(0.1)
            await asyncio.get_running_loop().run_in_executor(None, self.link.stop)
        if self.outbox is not None:
            await self.db(
                self.outbox.set_meta, {"mqtt_state": "stopped", "mqtt_since": self.clock.wall()}
            )
            await self.db(self.outbox.close)
        self._db.shutdown(wait=True)
        log.info("stopped")

    # ------------------------------------------------------------------ pipeline
    async def _intake(self, sources: list[Source]) -> None:
        queue: asyncio.Queue[tuple[bool, list[Sighting] | list[PositionFix]] | None] = (
            asyncio.Queue(maxsize=64)
        )

        async def pump(src: Source) -> None:
            try:
                async for batch in src.batches():
                    await queue.put((src.live, batch))
            finally:
                await queue.put(None)

        pumps = [asyncio.create_task(pump(s), name=f"source {s.name}") for s in sources]
        running = len(pumps)
        observe = self.tracker.observe_sightings
        next_tick = float("-inf")
        last_t = 0.0
        live = True
        try:
            while running:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that arrives as the queue delivers (seen as a SIGTERM lost
                    # right after SIGCONT, when a stopped source delivers its backlog at once)
                    async with asyncio.timeout(TICK_S):
                        item = await queue.get()
                except TimeoutError:
                    if live:  # a silent radio: time still passes (lost tags, dwell exits)
                        now = self.clock.mono()
                        self.tracker.tick(now)
                        self._collect(True, now)
                    continue
                if item is None:
                    running -= 1
                    for p in (
                        pumps
                    ):  # a source that failed (e.g. a radio that stays silent) stops the daemon
                        if p.done() and not p.cancelled() and p.exception() is not None:
                            raise p.exception()  # type: ignore[misc]
                    continue
                live, batch = item
                if live:
                    self._last_intake = time.monotonic()
                if isinstance(batch[0], PositionFix):
                    for f in batch:
                        self.tracker.observe_position(f.tag, f.x, f.y, f.t, f.quality)
                    last_t = batch[-1].t
                else:
                    observe(batch)
                    last_t = batch[-1][3]
                if last_t >= next_tick:
                    next_tick = last_t + TICK_S
                    self.tracker.tick(last_t)
                    self._collect(live, last_t)
            for p in pumps:
                if p.done() and p.exception() is not None:
                    raise p.exception()  # type: ignore[misc]
            self.tracker.tick(last_t)
            self.tracker.finish(last_t)
            self._collect(live)
            await self._commit()
            self._sources_done.set()
            self._kick()
            await asyncio.Event().wait()  # sources ended: keep delivering until stopped / drained
        finally:
            for p in pumps:
                p.cancel()

    def _finish_pipeline(self) -> None:
        self.tracker.finish(self.clock.mono())
        self._collect(True)

    def _collect(self, live: bool, now: float | None = None) -> None:
        """Turn the tracker's events (and offer triggers due by `now`) into wire events, with
        wall time applied at the edge."""
        synced = self.clock.synced() if live else True
        off = self.clock.wall() - self.clock.mono() if live else 0.0
        for ev in self.tracker.events:
            if live:
                ev = DwellEvent(ev.kind, ev.tag, ev.zone, ev.start + off, ev.end + off)
            self._pending.append(dwell_event_body(self.ident, ev, synced))
        self.tracker.events.clear()
        if self.matcher is not None and now is not None:
            self.matcher.sync_stays(self.tracker.dwell.ongoing())
            for trig in self.matcher.tick(now, synced, off):
                self._pending.append(
                    offer_event_body(self.ident, trig, trig.stay_start + off, trig.at + off, synced)
                )
                self._pending_triggers.append(
                    (self.ident.pseudonym(trig.tag), trig.offer.id, trig.at + off)
                )
        if len(self._pending) >= self.cfg.values["outbox"]["commit_max_events"]:
            self._wake.set()

    async def _committer(self) -> None:
        interval = self.cfg.values["outbox"]["commit_interval_s"]
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: see _intake
                    await self._wake.wait()
            self._wake.clear()
            await self._commit()

    async def _commit(self) -> None:
        if not self._pending or self.outbox is None:
            return
        batch, self._pending = self._pending, []
        triggers, self._pending_triggers = self._pending_triggers, []
        seqs = await self.db(self.outbox.append, batch, triggers)
        if seqs:
            log.debug("committed seq %d..%d", seqs[0], seqs[-1])
        self._kick()

    # ------------------------------------------------------------------ publishing
    def _spawn(self, coro: Any) -> None:
        """Background work started from a callback: kept referenced, awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _kick(self) -> None:
        self._publish_wake.set()

    def _on_link_event(self, ev: LinkEvent) -> None:
        """Runs on the loop (handed over from paho's thread)."""
        if isinstance(ev, Connected):
            self.sync.connected = True
            m = self.cfg.values["mqtt"]
            self.sync.window = max(1, min(m["max_inflight"], ev.receive_maximum))
            limit = ev.maximum_packet_size or MAX_MESSAGE_BYTES
            self.sync.max_bytes = max(1024, min(MAX_MESSAGE_BYTES, limit - 512))
            self._spawn(self._publish_status(True))
        elif isinstance(ev, Disconnected):
            self.sync.connected = False
            self._spawn(self._note_state("disconnected"))
        elif isinstance(ev, Message):
            if ev.topic == self.topics.offers:
                self._spawn(self._on_catalogue(ev.payload))
        elif isinstance(ev, Published):
            seqs = self.sync.inflight.pop(ev.mid, None)
            if seqs is None:
                return  # status messages, or a resend's second ack
            self._spawn(self._settle(seqs, ev))
        self._kick()

    async def _settle(self, seqs: list[int], ev: Published) -> None:
        assert self.outbox is not None
        if ev.ok:
            await self.db(self.outbox.ack, seqs)
        else:
            self.sync.refused += 1
            moved = await self.db(
                self.outbox.refused, seqs, ev.reason, self.cfg.values["outbox"]["max_attempts"]
            )
            log.error(
                "broker refused %d events (%s)%s",
                len(seqs),
                ev.reason,
                f"; {moved} moved to the dead-letter table" if moved else "",
            )
            await asyncio.sleep(min(30.0, 2.0 ** min(self.sync.refused, 5)))
        self._kick()

    async def _publisher(self) -> None:
        assert self.outbox is not None and self.link is not None
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            while self.sync.connected and len(self.sync.inflight) < self.sync.window:
                newest = self.sync.newest_next
                self.sync.newest_next = not newest
                rows: list[Row] = await self.db(
                    self.outbox.claim,
                    self.cfg.values["mqtt"]["max_batch"],
                    self.sync.max_bytes,
                    newest,
                )
                if not rows:
                    rows = await self.db(
                        self.outbox.claim,
                        self.cfg.values["mqtt"]["max_batch"],
                        self.sync.max_bytes,
                        not newest,
                    )
                if not rows:
                    break
                payload = self._batch_payload(rows)
                mid = self.link.publish(self.topics.events, payload, qos=1)
                if mid is None:
                    await self.db(self.outbox.release, [r.seq for r in rows])
                    break
                self.sync.inflight[mid] = [r.seq for r in rows]
            if self.exit_when_drained and self._sources_done.is_set() and not self.sync.inflight:
                st = await self.db(self.outbox.stats)
                if st["backlog"] == 0:
                    log.info("source exhausted and every event acknowledged: exiting")
                    self._stop.set()

    def _batch_payload(self, rows: list[Row]) -> bytes:
        head = orjson.dumps(
            {
                "schema": EVENT_SCHEMA,
                "store": self.ident.store,
                "gateway": self.ident.gateway,
                "sent": round(self.clock.wall(), 3),
            }
        )
        return head[:-1] + b',"events":[' + b",".join(r.body for r in rows) + b"]}"

    # ------------------------------------------------------------------ offers
    def _activate(
        self, cat: Catalogue, history: list[tuple[str, str, float]] | None = None
    ) -> None:
        if self.matcher is None:
            self.matcher = OfferMatcher(
                cat, self.layout.timezone, history or (), self.ident.pseudonym
            )
        else:
            self.matcher = self.matcher.replace_catalogue(cat)
        self.offers_state["version"] = cat.version

    async def _load_cached_catalogue(self) -> None:
        assert self.outbox is not None
        cached = await self.db(self.outbox.load_catalogue)
        if cached is None:
            return
        try:
            cat = parse_catalogue(orjson.loads(cached[1]))
        except (CatalogueError, orjson.JSONDecodeError) as e:
            log.error("the cached offer catalogue is unusable (%s); waiting for a new one", e)
            return
        history = await self.db(self.outbox.trigger_history, self.clock.wall() - HISTORY_S)
        self._activate(cat, history)
        log.info(
            "offer catalogue version %d from the local cache: %d offers",
            cat.version,
            len(cat.offers),
        )

    async def _on_catalogue(self, payload: bytes) -> None:
        """A catalogue pushed on .../offers: validated, newer versions only, the last good kept."""
        assert self.outbox is not None
        version: Any = None
        try:
            obj = orjson.loads(payload)
            version = obj.get("version") if isinstance(obj, dict) else None
            cat = parse_catalogue(obj)
        except (orjson.JSONDecodeError, CatalogueError) as e:
            reason = f"not JSON: {e}" if isinstance(e, orjson.JSONDecodeError) else str(e)
            log.error(
                "offer catalogue version %s rejected: %s (keeping version %s)",
                version,
                reason,
                self.offers_state["version"],
            )
            self.offers_state["rejected"] = {
                "version": version,
                "reason": reason,
                "time": round(self.clock.wall(), 3),
            }
            await self._publish_status(True)
            return
        current = self.offers_state["version"]
        if current is not None and cat.version <= current:
            log.info(
                "offer catalogue version %d ignored: version %d is active", cat.version, current
            )
            return
        await self.db(self.outbox.save_catalogue, cat.version, payload)
        if self.matcher is None:
            history = await self.db(self.outbox.trigger_history, self.clock.wall() - HISTORY_S)
            self._activate(cat, history)
        else:
            self._activate(cat)
        log.info("offer catalogue version %d active: %d offers", cat.version, len(cat.offers))
        await self._publish_status(True)

    # ------------------------------------------------------------------ status
    def _status_payload(self, online: bool) -> bytes:
        st = self._stats
        return orjson.dumps(
            {
                "schema": EVENT_SCHEMA,
                "store": self.ident.store,
                "gateway": self.ident.gateway,
                "online": online,
                "version": __version__,
                "time": round(self.clock.wall(), 3),
                "clock_synced": self.clock.synced(),
                "backlog": st.get("backlog", 0),
                "oldest_age_s": st.get("oldest_age_s"),
                "last_acked_seq": st.get("last_acked_seq", 0),
                "drops": st.get("drops", {}),
                "dead_letter": st.get("dead_letter", 0),
                "alerts": st.get("alerts", []),
                "active_tags": self.tracker.active_tags,
                "offers": self.offers_state,
            }
        )

    async def _publish_status(self, online: bool) -> None:
        assert self.outbox is not None and self.link is not None
        self._stats = await self.db(self.outbox.stats)
        await self._note_state("connected" if self.sync.connected else "disconnected")
        if self.link.connected:
            self.link.publish(self.topics.status, self._status_payload(online), qos=1, retain=True)

    async def _note_state(self, state: str) -> None:
        if self.outbox is None:
            return
        await self.db(
            self.outbox.set_meta,
            {
                "mqtt_state": state,
                "mqtt_since": self.clock.wall(),
                "broker": self.cfg.values["mqtt"]["broker"],
                "pid": os.getpid(),
                "version": __version__,
                "active_tags": self.tracker.active_tags,
            },
        )

    async def _status_loop(self) -> None:
        next_status = time.monotonic() + STATUS_EVERY_S
        while True:
            await asyncio.sleep(self._watchdog_s or STATUS_EVERY_S)
            await self._feed_watchdog()
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                if self.matcher is not None:
                    self.matcher.forget_before(self.clock.wall() - HISTORY_S)
                await self._publish_status(True)

    async def _feed_watchdog(self) -> None:
        """Fed only while healthy: the event loop runs (we are here), the outbox thread answers,
        and a live source delivered something recently. A hung loop or a wedged writer stops
        the feeding, and systemd restarts the service."""
        if self._watchdog_s is None or self.outbox is None:
            return
        try:
            async with asyncio.timeout(10.0):  # not wait_for: see _intake
                st = await self.db(self.outbox.stats)
        except (TimeoutError, sqlite3.Error) as e:
            log.error("outbox not answering (%s): not feeding the systemd watchdog", e)
            return
        if self._last_intake is not None and time.monotonic() - self._last_intake > 300.0:
            log.error("no data from any source for 5 min: not feeding the systemd watchdog")
            return
        sdnotify.notify(
            f"WATCHDOG=1\nSTATUS=backlog {st['backlog']}, {self.tracker.active_tags} tags"
        )


def run_gateway(
    cfg: Config,
    layout: Layout,
    model: RadioModel | None,
    sources: list[str],
    exit_when_drained: bool = False,
    clock: Clock | None = None,
) -> int:
    gw = Gateway(cfg, layout, model, sources, clock, exit_when_drained)
    return asyncio.run(gw.run())
