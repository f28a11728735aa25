"""`shelfgate status`: what the gateway is doing (connection, backlog, drops), read from its
outbox database, so it works while the daemon runs and after it stopped."""

from __future__ import annotations

import argparse
import json
import time

from positioning.errors import InputError


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cmd_status(a: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.outbox import read_status

    db = load_config(a.config).with_overrides(data_dir=a.data_dir).outbox_path
    if not db.exists():
        raise InputError(
            str(db), "", "no outbox here: has `shelfgate run` started with this data dir?"
        )
    if a.clear_alerts:
        from gateway.outbox import clear_alerts

        print(f"cleared {clear_alerts(db)} alert(s)")
        return 0
    st = read_status(db)
    if a.json:
        print(json.dumps(st, indent=2))
        return 0
    now = time.time()  # noqa: TID251 - display only
    s = st["state"]
    since = s.get("mqtt_since")
    print(
        f"connection:   {s.get('mqtt_state', 'unknown')} to {s.get('broker', '?')}"
        f" (since {_age(now - since) if since else '?'} ago)"
    )
    age = now - st["oldest_created"] if st["oldest_created"] else None
    print(
        f"backlog:      {st['backlog']} events, {st['backlog_bytes'] / 1024:.0f} KiB, oldest {_age(age)} old"
    )
    print(
        f"delivered:    {st['acked']} events, last acknowledged seq {st['last_acked_seq']}, next seq {st['next_seq']}"
    )
    drops = ", ".join(f"{v} {k}" for k, v in st["drops"].items()) or "none"
    print(f"dropped:      {drops} (quota overflow)")
    print(f"dead letters: {st['dead_letter']} (refused by the broker too often)")
    for alert in st["alerts"]:
        print(f"ALERT:        {alert}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("status", help="what the gateway is doing: connection, backlog, drops")
    s.add_argument("--config")
    s.add_argument("--data-dir")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--clear-alerts", action="store_true", help="acknowledge the alerts (e.g. a reset database)"
    )
    s.set_defaults(func=cmd_status)
