"""`shelfgate run`: sources -> pipeline -> SQLite outbox -> MQTT, one asyncio application made of
small services (gateway/services/):

    Intake          sources into the pipeline, events out; sleeps until the next deadline
    Committer       group commit into the outbox; an offer commits at once
    Publisher       the in-flight window to the broker; acks settle in the outbox
    CatalogueService  the offer catalogue (pushed, validated off the loop, cached)
    StatusReporter  the retained status message and `shelfgate status`'s notes
    RemoteConfigService  configuration pushed on .../config: validated, applied, confirmed
    CommandService  commands on .../commands, answered on .../replies
    Watchdog        feeds systemd only while healthy
    WebService      the technician web app and /metrics (gateway/web/), when [web] listens

Threads: the event loop (all of the above), the outbox thread (every SQLite call: one writer),
the MQTT network thread (every paho call), serial reader threads. Data crosses into the loop only
through `call_soon_threadsafe` / `run_in_executor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

import orjson

from drivers.network.health import receiver_counters
from drivers.network.timebase import input_clock
from drivers.registry import open_sources
from drivers.source import SourceContext, SourceSpec
from positioning.layout import Layout
from positioning.pathloss import RadioModel

from . import sdnotify
from .assembly import build_identity, build_pipeline
from .clock import Clock
from .config import GatewayConfig
from .events import WireEvent
from .mqtt.link import (
    Connected,
    ConnectFailed,
    Disconnected,
    LinkEvent,
    Message,
    MqttLink,
    Published,
    Unsent,
)
from .services.catalogue import CatalogueService
from .services.commands import CommandError, CommandService
from .services.committer import Committer
from .services.intake import Intake
from .services.ownership import Ownership
from .services.publisher import Publisher, Topics
from .services.receivers import ReceiverHealth
from .services.remote import RemoteConfigService
from .services.status import StatusReporter, Watchdog, status_payload
from .services.store import OutboxWorker

if TYPE_CHECKING:
    from .remote.state import RemoteState
    from .startup import ConfigSource
    from .web.server import WebService

log = logging.getLogger(__name__)

SHUTDOWN_FLUSH_S = 5.0
RESTART = 75  # run() asks its caller to start the daemon again (a configuration changed)


class Gateway:
    def __init__(
        self,
        cfg: GatewayConfig,
        layout: Layout,
        model: RadioModel | None,
        sources: tuple[str | SourceSpec, ...],
        clock: Clock | None = None,
        exit_when_drained: bool = False,
        remote: RemoteState | None = None,
        source: ConfigSource | None = None,
        check_args: tuple[str, ...] = (),
        *,
        calibration_from: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.remote_state = remote
        self.config_source = source
        self.check_args = check_args
        self.restart_reason: str | None = None
        self.calibration_from = calibration_from  # the file `model` was read from
        self.clock = clock or Clock()
        self.exit_when_drained = exit_when_drained
        data_dir = cfg.outbox_path.parent
        self.identity = build_identity(cfg, layout, key_dir=data_dir)
        # the input's clock: the real one, or a store played N x faster by networked receivers
        self.input_clock = input_clock(sources, self.clock)
        self.pipeline = build_pipeline(
            cfg, layout, model, clock=self.input_clock, identity=self.identity
        )
        self.health = ReceiverHealth(self.pipeline.tracker.rx_index, self.input_clock.mono())
        self.pipeline.tap = self.health  # the web app's recorder takes over (and forwards)
        ctx = SourceContext(
            layout, self.input_clock.mono, self.pipeline.resolver, workers=0,
            wall=self.input_clock.wall,
        )  # fmt: skip
        self.sources = open_sources(sources, ctx)
        self.topics = Topics(cfg.mqtt.topic_prefix, self.identity.store, self.identity.gateway)
        self.store = OutboxWorker(
            cfg.outbox_path, int(cfg.outbox.quota_mb * 1024 * 1024), self.clock
        )
        self._timezone = layout.timezone
        self._zones = tuple(z.id for z in layout.zones)
        self._stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        await self.store.open()
        self._wire(loop)
        for alert in (await self.store.do(lambda o: o.stats()))["alerts"]:
            log.error("alert: %s", alert)
        await self.catalogue.load_cached()
        self.pipeline.resume(await self.store.do(lambda o: o.load_stays()))
        if self.web is not None:
            await self.web.start()
        self.link.start()
        sdnotify.notify("READY=1")
        tasks = [
            asyncio.create_task(self.intake.run(), name="intake"),
            asyncio.create_task(self.committer.run(), name="committer"),
            asyncio.create_task(self.publisher.run(), name="publisher"),
            asyncio.create_task(self.status.run(), name="status"),
        ]
        if self.web is not None:
            tasks.append(asyncio.create_task(self.web.run(), name="web"))
        if self.remote is not None:
            tasks.append(asyncio.create_task(self.remote.run(), name="remote config"))
        if self.watchdog.interval_s is not None:  # under systemd with WatchdogSec
            tasks.append(asyncio.create_task(self.watchdog.run(), name="watchdog"))
        stop_waiter = asyncio.create_task(
            self._exit_when_drained() if self.exit_when_drained else self._stop.wait()
        )
        try:
            done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop_waiter and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            stop_waiter.cancel()
            await self._shutdown(tasks)
        if self.restart_reason is not None:
            log.info("restarting: %s", self.restart_reason)
            return RESTART
        return 0

    def request_restart(self, reason: str) -> None:
        """A clean restart: stop (flush, wait for acknowledgements), then the caller starts the
        daemon again (gateway.cli.run re-executes the process)."""
        if self.restart_reason is None:
            self.restart_reason = reason
        self._stop.set()

    def apply_hot(self, new: GatewayConfig) -> None:
        """Settings that take effect in place (gateway.remote.message.HOT)."""
        from .assembly import tracker_params

        params = tracker_params(new)
        self.pipeline.tracker.params = params
        self.pipeline.tracker.dwell.params = params.dwell
        self.watchdog.silence_s = new.gateway.source_silence_s
        logging.getLogger().setLevel(new.gateway.log_level.upper())
        self.cfg = new

    def _wire(self, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.cfg
        group_status = (  # several gateways: every gateway's status says who is online
            (f"{cfg.mqtt.topic_prefix}/{self.identity.store}/+/status",)
            if cfg.gateway.group is not None
            else ()
        )
        self.link = MqttLink(
            cfg.mqtt.link_settings(
                self.identity.store, self.identity.gateway, f"{cfg.path}: mqtt.broker"
            ),
            loop,
            self._on_link_event,
            will=(
                self.topics.status,
                status_payload(
                    self.topics, self.clock, False, {}, 0, {"version": None, "rejected": None}
                ),
            ),
            subscriptions=(
                self.topics.offers,
                *((self.topics.config, self.topics.commands) if self._remote_on() else ()),
                *group_status,
            ),
        )
        self.publisher = Publisher(
            self.store, self.link, self.topics, cfg.mqtt, cfg.outbox, self.clock
        )
        self.committer = Committer(
            self.store,
            cfg.outbox,
            self.publisher.kick,
            lambda: self._spawn(self._status_now()),
            self.pipeline.suspend,
        )
        self.web = self._web() if cfg.web.listen is not None else None
        commit = self.committer.add
        self.ownership = None
        if cfg.gateway.group is not None:  # several gateways: the tags' owners send (ownership.py)
            own = self.ownership = Ownership(
                self.identity.gateway,
                cfg.gateway.group,
                f"{cfg.mqtt.topic_prefix}/{self.identity.store}/",
            )

            def commit(events: list[WireEvent]) -> None:
                self.committer.add(own.filter(events))

        sink = commit if self.web is None else self.web.state.counting(commit)
        self.intake = Intake(self.sources, self.pipeline, sink, self.input_clock)
        self.catalogue = CatalogueService(
            self.store,
            self.pipeline,
            self._zones,
            self._timezone,
            self.identity,
            self.clock,
            self._status_now,
        )
        self.status = StatusReporter(
            self.store,
            self.link,
            self.publisher,
            self.topics,
            self.clock,
            cfg.mqtt.broker,
            lambda: self.pipeline.tracker.active_tags,
            self.catalogue.state,
            lambda: [a for a in (self.committer.alert, *self._drift_alerts()) if a],
            receivers=lambda: self.health.report(self.input_clock.mono()),
            config=self._config_report,
        )
        self.remote: RemoteConfigService | None = None
        if self._remote_on():
            assert self.config_source is not None and self.remote_state is not None
            self.remote = RemoteConfigService(
                self.remote_state,
                self.config_source,
                cfg.gateway.data_dir,
                lambda: self.cfg,
                self.apply_hot,
                self.request_restart,
                self._status_now,
                self.status.last_error,
                self.clock,
            )
        self.commands = CommandService(
            self.link,
            self.topics.replies,
            {
                "status": self._cmd_status,
                "reload": self._cmd_reload,
                "rescan": self._cmd_rescan,
                "resend": self._cmd_resend,
                "diagnose": self._cmd_diagnose,
            },
            lambda: self.publisher.max_bytes,
        )
        if receiver_counters(self.sources):  # networked receivers: their counters too
            self.status.extra.append(
                lambda: {
                    "network_receivers": {
                        c.receiver: c.as_json() for c in receiver_counters(self.sources)
                    }
                }
            )
        if self.ownership is not None:
            self.status.extra.append(self.ownership.status)
        if (
            self.pipeline.tracker.layout.references
        ):  # reference beacons: each receiver's drift since calibration
            self.status.extra.append(self._drift_status)
        self.watchdog = Watchdog(
            self.store, lambda: self.intake.last_delivery, self.clock, cfg.gateway.source_silence_s
        )
        if self.web is not None:
            self.web.health = self.watchdog.unhealthy
        self._bg: set[asyncio.Task[Any]] = set()

    def _drift_status(self) -> dict[str, Any]:
        drift = self.pipeline.tracker.drift
        rows = drift.report() if drift is not None else []
        return {"drift": {d.receiver: d.as_json() for d in rows}}

    def _drift_alerts(self) -> list[str]:
        drift = self.pipeline.tracker.drift
        return [a for d in (drift.report() if drift is not None else []) if (a := d.alert)]

    def _remote_on(self) -> bool:
        return (
            self.cfg.remote.enabled
            and self.config_source is not None
            and self.remote_state is not None
        )

    def _config_report(self) -> dict[str, Any]:
        if self.remote is not None:
            return self.remote.report()
        return {"version": None, "rejected": None, "state": "file"}

    # ------------------------------------------------------------------ commands
    async def _cmd_status(self, args: dict[str, Any]) -> Any:
        self.status.stats = await self.store.do(lambda o: o.stats())
        return orjson.loads(self.status.payload(True))

    async def _cmd_reload(self, args: dict[str, Any]) -> Any:
        if self.remote is None:
            raise CommandError("remote configuration is off ([remote] enabled = false)")
        return await self.remote.reload()

    async def _cmd_rescan(self, args: dict[str, Any]) -> Any:
        return {"reopened": self.intake.rescan()}

    async def _cmd_resend(self, args: dict[str, Any]) -> Any:
        seq = args.get("from_seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise CommandError(f"args.from_seq: expected an integer >= 1, got {seq!r}")
        result = await self.store.do(lambda o: o.resend(seq))
        self.publisher.kick()
        return result

    async def _cmd_diagnose(self, args: dict[str, Any]) -> Any:
        from .diagnose import bundle, shortened

        status = await self._cmd_status({})
        lines = args.get("log_lines", 100)
        if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= 10000:
            raise CommandError(f"args.log_lines: expected 0..10000, got {lines!r}")
        b = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: bundle(self.cfg, self._config_report(), status, lines, True, self.check_args),
        )
        return shortened(b, self.publisher.max_bytes - 1024)

    def _web(self) -> WebService:
        from .web.server import WebService
        from .web.state import LiveState
        from .web.wizard import CalibrationWizard

        publisher = self.publisher
        state = LiveState(
            self.pipeline.tracker.layout,
            self.pipeline,
            self.identity,
            self.store,
            lambda: publisher.connected,
            self.input_clock,
            self.health,
        )
        state.networked = lambda: receiver_counters(self.sources)
        wizard = CalibrationWizard(state, self.cfg.outbox_path.parent, self.calibration_from)
        return WebService(self.cfg.web, state, lambda: len(publisher.inflight), wizard)

    async def _status_now(self) -> None:
        self.catalogue.forget_old_triggers()
        await self.status.publish(True)

    def _spawn(self, coro: Any) -> None:
        """Work started from a link event: kept referenced, awaited at shutdown; a failure is
        logged (a status note that cannot be written on a full disk must not go unseen)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._bg.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_coro(), task.exception())

    def _on_link_event(self, ev: LinkEvent) -> None:
        """Runs on the loop (handed over from the MQTT thread)."""
        if isinstance(ev, Connected):
            self.publisher.on_connected(ev)
            if self.remote is not None:
                self.remote.on_connected()
            self._spawn(self._status_now())
        elif isinstance(ev, Disconnected):
            self.publisher.on_disconnected(ev)
            self._spawn(self.status.note("disconnected"))
        elif isinstance(ev, ConnectFailed):
            self._spawn(self.status.note_error(ev.reason))
        elif isinstance(ev, Published | Unsent):
            self.publisher.on_settled(ev)
        elif isinstance(ev, Message) and ev.topic == self.topics.offers:
            self._spawn(self.catalogue.on_message(ev.payload))
        elif isinstance(ev, Message) and ev.topic == self.topics.config and self.remote:
            self._spawn(self.remote.on_message(ev.payload))
        elif isinstance(ev, Message) and ev.topic == self.topics.commands:
            self._spawn(self.commands.on_message(ev.payload, ev.retained))
        elif isinstance(ev, Message) and self.ownership is not None:
            taken = self.ownership.on_status(ev.topic, ev.payload)
            if taken:
                self.committer.add(taken)

    async def _exit_when_drained(self) -> None:
        """Ends when stopped, or once the sources are exhausted and every event acknowledged."""
        done = asyncio.create_task(self.intake.done.wait())
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([done, stop], return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        stop.cancel()
        if self._stop.is_set():
            return
        await self.committer.flush()
        while True:
            await self.publisher.idle.wait()
            backlog = (await self.store.do(lambda o: o.stats()))["backlog"]
            if backlog == 0:  # every event acknowledged (a ticket the broker forgot is moot)
                log.info("source exhausted and every event acknowledged: exiting")
                return
            self.publisher.idle.clear()
            self.publisher.kick()
            with contextlib.suppress(TimeoutError):  # not connected yet: look again shortly
                async with asyncio.timeout(0.2):
                    await self._stop.wait()
            if self._stop.is_set():
                return

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Stop intake, commit what the pipeline holds, give in-flight publishes a bounded time."""
        tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await tasks[0]
        sdnotify.notify("STOPPING=1")
        if not self.pipeline.live:
            self.intake.finish()  # recorded input: its stays end with it
        # live input: the open stays are kept (with this last commit) for the next start
        await self.committer.flush()
        await self.publisher.wait_acknowledged(SHUTDOWN_FLUSH_S)
        for t in [*tasks[1:], *self._bg]:
            t.cancel()
        await asyncio.gather(*tasks[1:], *self._bg, return_exceptions=True)
        await self.publisher.stop()
        if self.publisher.connected:
            with contextlib.suppress(Exception):  # the last figures, not those of the last period
                self.status.stats = await self.store.do(lambda o: o.stats())
            self.link.publish(self.topics.status, self.status.payload(False), qos=1, retain=True)
        await asyncio.get_running_loop().run_in_executor(None, self.link.stop)
        await self.status.note("stopped")
        await self.store.close()
        log.info("stopped")


def run_gateway(
    cfg: GatewayConfig,
    layout: Layout,
    model: RadioModel | None,
    sources: tuple[str | SourceSpec, ...],
    exit_when_drained: bool = False,
    clock: Clock | None = None,
    remote: RemoteState | None = None,
    source: ConfigSource | None = None,
    check_args: tuple[str, ...] = (),
    calibration_from: str | None = None,
) -> int:
    async def main() -> int:
        gw = Gateway(
            cfg,
            layout,
            model,
            sources,
            clock,
            exit_when_drained,
            remote,
            source,
            check_args,
            calibration_from=calibration_from,
        )
        return await gw.run()

    return asyncio.run(main())
