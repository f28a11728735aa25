"""`shelfgate consume` and `shelfgate paths`: the cloud side's commands (need the `cloud` extra)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from positioning.errors import InputError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "consume",
        help="cloud side: MQTT events -> PostgreSQL (shared subscription, acked after commit)",
    )
    c.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    c.add_argument("--db", required=True, help="postgresql://user@host/dbname")
    c.add_argument("--group", default="shelfgate", help="shared subscription group (shelfgate)")
    c.add_argument(
        "--topic",
        action="append",
        default=None,
        help="topic filter (repeatable; default shelfgate/v1/+/+/events and .../status)",
    )
    c.add_argument(
        "--client-id",
        default=None,
        help="stable per consumer instance (default shelfgate-consume-<group>-<hostname>)",
    )
    c.add_argument("--username")
    c.add_argument("--password-file")
    c.add_argument("--ca-file")
    c.add_argument("--cert-file")
    c.add_argument("--key-file")
    c.add_argument("--allow-plaintext", action="store_true", help="mqtt:// to a non-loopback host")
    c.add_argument("--session-expiry", type=int, default=3600, help="seconds (3600)")
    c.set_defaults(func=cmd_consume)

    p = sub.add_parser(
        "paths", help="cloud side: k-anonymous shopper-path report per store and hour"
    )
    p.add_argument("--db", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--k", type=int, default=5, help="suppress cells with fewer distinct tags (5)")
    p.add_argument("--since", help="ISO date/time (default: everything)")
    p.add_argument("--until", help="ISO date/time")
    p.add_argument(
        "--timezone", default=None, help="hours in this zone (default: the layout's, else UTC)"
    )
    p.add_argument("--layout", help="store layout (TOML): zones drawn on the floor map")
    p.add_argument("--plot", help="write a PNG: zone traffic on the floor map + transitions")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_paths)


def consumer_settings(a: argparse.Namespace) -> Any:
    from gateway.mqtt.settings import LinkSettings, parse_broker

    from .consumer import DEFAULT_FILTERS, ConsumerSettings, default_client_id

    host, port, tls = parse_broker(a.broker, a.allow_plaintext, "--broker")
    if not a.db.startswith(("postgresql://", "postgres://")):
        raise InputError("--db", a.db, "expected postgresql://user@host:port/dbname")
    password = None
    if a.password_file:
        try:
            with open(a.password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        except OSError as e:
            raise InputError("--password-file", a.password_file, e.strerror or str(e)) from None
    link = LinkSettings(
        host=host,
        port=port,
        tls=tls,
        client_id=a.client_id or default_client_id(a.group),
        username=a.username,
        password=password,
        ca_file=a.ca_file,
        cert_file=a.cert_file,
        key_file=a.key_file,
        session_expiry_s=a.session_expiry,
        backoff_base_s=0.5,
        backoff_cap_s=30.0,
    )
    filters = tuple(a.topic) if a.topic else DEFAULT_FILTERS
    return ConsumerSettings(link=link, db_url=a.db, group=a.group, filters=filters)


def cmd_consume(a: argparse.Namespace) -> int:
    try:
        import psycopg
    except ImportError:
        raise InputError(
            "consume", "", "needs the cloud extra: pip install 'shelfgate[cloud]'"
        ) from None
    from .consumer import run_consumer

    s = consumer_settings(a)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return run_consumer(s, stop)
    except psycopg.OperationalError as e:
        raise InputError("--db", a.db, f"cannot connect: {' '.join(str(e).split())}") from None


def cmd_paths(a: argparse.Namespace) -> int:
    from .analytics import run_report

    return run_report(a)
