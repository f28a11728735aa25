"""`shelfgate check`: what an installer needs to know before starting the service, in plain words.
It validates exactly as `run` does (gateway.startup), then says more."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.clock import Clock
from positioning.errors import ShelfgateError

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, SourceConfig
    from positioning.layout import Layout


class Report:
    def __init__(self) -> None:
        self.failed = 0
        self.warned = 0

    def ok(self, msg: str) -> None:
        print(f"  ok    {msg}")

    def warn(self, msg: str) -> None:
        self.warned += 1
        print(f"  WARN  {msg}")

    def fail(self, msg: str) -> None:
        self.failed += 1
        print(f"  FAIL  {msg}")


def mqtt_probe(settings: Any, timeout: float = 5.0) -> str | None:
    """Connect once and wait for the CONNACK; None when accepted, else the reason in words."""
    import ssl

    from gateway.mqtt.settings import make_client

    result: dict[str, str | None] = {}
    done = threading.Event()
    c = make_client(settings, settings.client_id + "-check", session=False)

    def on_connect(client: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        result["r"] = None if not rc.is_failure else f"the broker refused the connection: {rc}"
        done.set()

    c.on_connect = on_connect
    try:
        c.connect(settings.host, settings.port, 10)
    except ssl.SSLError as e:
        return f"TLS failed ({e.reason or e}): check ca_file / cert_file / key_file and the broker's certificate"
    except OSError as e:
        return f"cannot reach {settings.host}:{settings.port} ({e.strerror or e})"
    c.loop_start()
    ok = done.wait(timeout)
    c.loop_stop()
    c.disconnect()
    if not ok:
        return f"no answer from {settings.host}:{settings.port} within {timeout:.0f} s"
    return result.get("r")


def cmd_check(a: argparse.Namespace) -> int:
    import logging

    from gateway.startup import effective_setup

    logging.getLogger().setLevel(logging.ERROR)  # this command speaks for itself
    r = Report()
    print("configuration")
    try:
        setup = effective_setup(a)
    except ShelfgateError as e:
        for line in str(e).splitlines():
            r.fail(line)
        print(f"\n{r.failed} problem(s): fix them and run `shelfgate check` again.")
        return 1
    r.ok(f"{setup.cfg.path}: valid")
    layout = _check_layout(r, setup.layout_path)
    _check_calibration(r, setup.calibration, layout)
    if layout is not None:
        _check_sources(r, setup.sources, layout)
    print("storage and privacy")
    _check_storage(r, setup.cfg)
    _check_privacy(r, setup.cfg)
    print("broker")
    if layout is not None:
        _check_broker(r, setup.cfg, layout)
    print()
    if r.failed:
        print(
            f"{r.failed} problem(s), {r.warned} warning(s): the gateway will not work as configured."
        )
        return 1
    print(
        f"all good{f' ({r.warned} warning(s))' if r.warned else ''}: start it with `systemctl restart shelfgate`."
    )
    return 0


def _check_layout(r: Report, path: str) -> Layout | None:
    from gateway.startup import load_store_layout

    try:
        layout = load_store_layout(path)
    except ShelfgateError as e:
        r.fail(str(e))
        return None
    r.ok(
        f"layout {path}: store {layout.store_id}, {len(layout.receivers)} receivers, {len(layout.zones)} zones"
    )
    if not layout.zones:
        r.warn("the layout has no zones: no dwell can be detected")
    return layout


def _check_calibration(r: Report, cal: str | None, layout: Layout | None) -> None:
    from gateway.startup import load_model

    if not cal:
        r.warn(
            "no calibration: zones are decided with a generic radio model (run `shelfgate calibrate`)"
        )
        return
    try:
        model = load_model(cal)
    except ShelfgateError as e:
        r.fail(str(e))
        return
    assert model is not None
    missing = [x.id for x in layout.receivers if x.id not in model.receivers] if layout else []
    if missing:
        r.warn(
            f"calibration {cal} has no fit for receivers {', '.join(missing)} (they use the shared model)"
        )
    else:
        r.ok(f"calibration {cal}: every receiver fitted")
    refs = [x.tag for x in layout.references] if layout else []
    if refs:
        recorded = [t for t in refs if t in model.references]
        if len(recorded) == len(refs):
            r.ok(f"calibration {cal} records the levels of all {len(refs)} reference beacons")
        else:
            absent = [t for t in refs if t not in model.references]
            r.warn(
                f"calibration {cal} does not record the reference beacons {', '.join(absent)}: "
                "their drift is measured from each start instead of from the calibration "
                "(calibrate again with them powered)"
            )


def _check_sources(r: Report, sources: tuple[SourceConfig, ...], layout: Layout) -> None:
    """Each source is opened as `run` opens it (URI, receiver ids); then what only the machine
    can say: does the serial port or the Bluetooth adapter exist."""
    from drivers.registry import open_source
    from drivers.source import SourceContext
    from positioning.tags import TagResolver

    ctx = SourceContext(layout, Clock().mono, TagResolver())
    for spec in sources:
        uri = spec.uri
        try:
            src = open_source(spec, ctx)
        except ShelfgateError as e:
            r.fail(f"source {e}")
            continue
        missing = _missing_device(uri)
        if missing:
            r.fail(f"source {uri}: {missing}")
        elif uri.startswith("sim:"):
            r.warn(f"source {uri}: a simulated store, not real receivers")
        elif getattr(src, "guard", None) is not None:  # networked receivers: listen a while
            _check_networked(r, src)
        else:
            r.ok(f"source {src.name}")


LISTEN_S = 5.0


def _check_networked(r: Report, src: Any) -> None:
    """Subscribes as `run` would and says which receivers were heard, silent or unknown."""
    import asyncio

    from drivers.network.health import findings, listen

    asyncio.run(listen(src, LISTEN_S))
    for level, msg in findings(src, LISTEN_S):
        {"ok": r.ok, "warn": r.warn, "fail": r.fail}[level](msg)


def _missing_device(uri: str) -> str | None:
    from drivers.registry import parse_uri

    su = parse_uri(uri)
    if su.kind == "serial" and su.path.startswith("/") and not Path(su.path).exists():
        return f"the serial port {su.path} does not exist (plugged in? see ls /dev/serial/by-id/)"
    if su.kind == "bluez":
        adapter = su.path or "hci0"
        if not (Path("/sys/class/bluetooth") / adapter).exists():
            return f"no Bluetooth adapter {adapter} on this machine (bluetoothctl list)"
    return None


def _check_storage(r: Report, cfg: GatewayConfig) -> None:
    import sqlite3

    from gateway.startup import data_dir_problem

    data_dir = Path(cfg.gateway.data_dir)
    problem = data_dir_problem(cfg.gateway.data_dir)
    if problem is not None:
        r.fail(f"{data_dir}: gateway.data_dir: {problem}")
        return
    r.ok(f"data_dir {data_dir} writable")
    db = cfg.outbox_path
    if not db.exists():
        return
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            res = c.execute("PRAGMA quick_check").fetchone()[0]
            backlog = c.execute("SELECT count(*) FROM events").fetchone()[0]
        if res == "ok":
            r.ok(f"outbox {db}: healthy, {backlog} events queued")
        else:
            r.fail(
                f"outbox {db} is damaged ({res}); `shelfgate run` will move it aside and start afresh"
            )
    except sqlite3.DatabaseError as e:
        r.fail(
            f"outbox {db} is not readable ({e}); `shelfgate run` will move it aside and start afresh"
        )


def _check_privacy(r: Report, cfg: GatewayConfig) -> None:
    from gateway.assembly import KEY_FILE

    if cfg.privacy.raw_ids:
        r.warn(
            "privacy.raw_ids = true: raw tag ids leave the gateway (only with the store's consent)"
        )
    elif cfg.privacy.secret is None and cfg.privacy.secret_file is None:
        key = Path(cfg.gateway.data_dir) / KEY_FILE
        r.warn(
            f"privacy.secret_file is not set: tags are pseudonymised with the gateway's own key "
            f"{key} (stable across restarts, but the backend needs the store's key to match them)"
        )
    else:
        r.ok("tags are pseudonymised with the store's key")
    if Clock().synced():
        r.ok("the system clock is synchronised")
    else:
        r.warn(
            "the system clock is not synchronised (yet): events say clock_synced=false, timed offers wait"
        )


def _check_broker(r: Report, cfg: GatewayConfig, layout: Layout) -> None:
    store = cfg.gateway.store or layout.store_id
    try:
        settings = cfg.mqtt.link_settings(store, cfg.gateway.id)
    except ShelfgateError as e:
        r.fail(str(e))
        return
    err = mqtt_probe(settings)
    if err is None:
        r.ok(f"{cfg.mqtt.broker}: connected and accepted")
    else:
        r.fail(f"{cfg.mqtt.broker}: {err}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .run import add_setup_arguments

    c = sub.add_parser("check", help="check config, layout, storage and broker, in plain words")
    add_setup_arguments(c)
    c.set_defaults(func=cmd_check)
