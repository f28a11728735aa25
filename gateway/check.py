"""`shelfgate check`: what an installer needs to know before starting the service, in plain words."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path
from typing import Any

from positioning.errors import ShelfgateError

from .clock import Clock


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

    from .mqtt_link import make_client

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
    import sqlite3

    from drivers.base import parse_source_uri

    from .cli_daemon import load_effective_config
    from .daemon import Gateway
    from .layoutfile import load_layout
    from .pipeline import load_calibration

    logging.getLogger().setLevel(logging.ERROR)  # this command speaks for itself
    r = Report()
    print("configuration")
    try:
        cfg, layout_path, sources = load_effective_config(a)
    except ShelfgateError as e:
        r.fail(str(e))
        print("\n1 problem: fix it and run `shelfgate check` again.")
        return 1
    r.ok(f"{cfg.path}: valid")
    try:
        layout = load_layout(layout_path)
        r.ok(
            f"layout {layout_path}: store {layout.store_id}, {len(layout.receivers)} receivers, {len(layout.zones)} zones"
        )
        if not layout.zones:
            r.warn("the layout has no zones: no dwell can be detected")
    except ShelfgateError as e:
        r.fail(str(e))
        layout = None
    cal = a.calibration or cfg.resolve(cfg.values["gateway"]["calibration"])
    if cal:
        try:
            model = load_calibration(cal)
            missing = (
                [x.id for x in layout.receivers if x.id not in model.receivers] if layout else []
            )
            if missing:
                r.warn(
                    f"calibration {cal} has no fit for receivers {', '.join(missing)} (they use the shared model)"
                )
            else:
                r.ok(f"calibration {cal}: every receiver fitted")
        except ShelfgateError as e:
            r.fail(str(e))
    else:
        r.warn(
            "no calibration: zones are decided with a generic radio model (run `shelfgate calibrate`)"
        )
    for uri in sources:
        try:
            su = parse_source_uri(uri)
            if su.kind == "replay" and not Path(su.path).exists():
                r.fail(f"source {uri}: the trace file does not exist")
            else:
                r.ok(f"source {uri}")
        except ShelfgateError as e:
            r.fail(str(e))
    print("storage and privacy")
    data_dir = Path(cfg.values["gateway"]["data_dir"])
    probe_dir = data_dir if data_dir.exists() else data_dir.parent
    if not os.access(probe_dir, os.W_OK):
        r.fail(f"data_dir {data_dir} is not writable by this user (the outbox lives there)")
    else:
        r.ok(f"data_dir {data_dir} writable")
    db = data_dir / "outbox.db"
    if db.exists():
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
    from .config import read_secret

    if read_secret(cfg) is None and not cfg.values["privacy"]["raw_ids"]:
        r.warn(
            "privacy.secret is not set: pseudonyms change at every start and the backend cannot match them"
        )
    elif cfg.values["privacy"]["raw_ids"]:
        r.warn(
            "privacy.raw_ids = true: raw tag ids leave the gateway (only with the store's consent)"
        )
    else:
        r.ok("tags are pseudonymised with the store's key")
    if Clock().synced():
        r.ok("the system clock is synchronised")
    else:
        r.warn(
            "the system clock is not synchronised (yet): events say clock_synced=false, timed offers wait"
        )
    print("broker")
    if layout is not None:
        gw = Gateway(cfg, layout, None, [])
        try:
            settings = gw._link_settings()
            err = mqtt_probe(settings)
            if err is None:
                r.ok(f"{cfg.values['mqtt']['broker']}: connected and accepted")
            else:
                r.fail(f"{cfg.values['mqtt']['broker']}: {err}")
        except ShelfgateError as e:
            r.fail(str(e))
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("check", help="check config, layout, storage and broker, in plain words")
    c.add_argument("--config")
    c.add_argument("--source", action="append")
    c.add_argument("--layout")
    c.add_argument("--calibration")
    c.add_argument("--broker")
    c.add_argument("--data-dir")
    c.add_argument("--store")
    c.add_argument("--gateway")
    c.set_defaults(func=cmd_check)
