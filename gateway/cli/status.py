"""`shelfgate status`: what the gateway is doing (connection, backlog, drops), read from its
outbox database, so it works while the daemon runs and after it stopped."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from positioning.errors import InputError


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _connection(state: dict[str, Any], now: float) -> str:
    """The link's state in a sentence, with the last connection error when it is not up."""
    broker = state.get("broker")
    mqtt_state = state.get("mqtt_state")
    if broker is None or mqtt_state is None:
        return "no state yet (the daemon has not written it: is `shelfgate run` running?)"
    since = state.get("mqtt_since")
    for_how_long = f" for {_age(now - since)}" if since else ""
    if mqtt_state == "connected":
        return f"connected to {broker}{for_how_long}"
    if mqtt_state == "stopped":
        return f"stopped (the daemon ended{f' {_age(now - since)} ago' if since else ''}); broker {broker}"
    out = f"not connected to {broker}{for_how_long}"
    err = state.get("mqtt_error")
    if isinstance(err, dict) and err.get("reason"):
        out += f"; last attempt {_age(now - float(err['time']))} ago: {err['reason']}"
    return out


def _remote(conf: dict[str, Any]) -> str:
    v = conf.get("version")
    out = "none pushed (the file's configuration)" if v is None else f"version {v}"
    if v is not None and conf.get("state") == "trial":
        out += " on trial (not yet confirmed by reaching the broker)"
    rej = conf.get("rejected")
    if isinstance(rej, dict):
        out += f"; version {rej.get('version')} rejected: {rej.get('reason')}"
    return out


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
    print(f"connection:   {_connection(st['state'], now)}")
    if st["backlog"]:
        age = _age(now - st["oldest_created"]) if st["oldest_created"] else "an unknown time"
        print(
            f"backlog:      {st['backlog']} events ({st['backlog_bytes'] / 1024:.0f} KiB) waiting; "
            f"the oldest was made {age} ago"
        )
    else:
        print("backlog:      none: every event made so far was acknowledged by the broker")
    print(
        f"delivered:    {st['acked']} events, last acknowledged seq {st['last_acked_seq']}, next seq {st['next_seq']}"
    )
    drops = ", ".join(f"{v} {k}" for k, v in st["drops"].items()) or "none"
    print(f"dropped:      {drops} (quota overflow)")
    print(f"dead letters: {st['dead_letter']} (refused by the broker too often)")
    rx = st["state"].get("receivers")
    if isinstance(rx, dict) and rx:
        states = [str(h.get("state")) for h in rx.values() if isinstance(h, dict)]
        quiet = [k for k, h in rx.items() if isinstance(h, dict) and h.get("state") != "ok"]
        which = f" ({', '.join(quiet)})" if quiet else ""
        print(
            f"receivers:    {states.count('ok')} ok, {states.count('silent')} silent, "
            f"{states.count('dead')} dead{which}"
        )
    conf = st["state"].get("config")
    if isinstance(conf, dict):
        print(f"remote config: {_remote(conf)}")
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
