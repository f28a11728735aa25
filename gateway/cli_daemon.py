"""`shelfgate run` and `shelfgate status`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from positioning.errors import InputError

REPO_LAYOUT = Path(__file__).resolve().parent.parent / "config" / "layout.toml"


def default_layout() -> str:
    for p in (Path("/etc/shelfgate/layout.toml"), REPO_LAYOUT):
        if p.exists():
            return str(p)
    raise InputError("--layout", "", "no layout given and none at /etc/shelfgate/layout.toml")


def load_effective_config(a: argparse.Namespace) -> tuple[Any, str, list[str]]:
    """Config file + command-line overrides (the command line wins), validated once."""
    from .config import load_config

    cfg = load_config(a.config)
    over = {
        ("mqtt", "broker"): a.broker,
        ("gateway", "data_dir"): a.data_dir,
        ("gateway", "store"): a.store,
        ("gateway", "id"): a.gateway,
    }
    cfg = cfg.with_overrides(over, tuple(a.source) if a.source else None)
    layout = a.layout or cfg.resolve(cfg.values["gateway"]["layout"]) or default_layout()
    sources = list(cfg.sources) or [f"sim:{layout}"]
    from .mqtt_link import parse_broker

    m = cfg.values["mqtt"]
    parse_broker(m["broker"], m["allow_plaintext"], f"{cfg.path}: mqtt.broker")
    return cfg, layout, sources


def cmd_run(a: argparse.Namespace) -> int:
    from .daemon import run_gateway
    from .layoutfile import load_layout
    from .pipeline import load_calibration

    cfg, layout_path, sources = load_effective_config(a)
    layout = load_layout(layout_path)
    cal = a.calibration or cfg.resolve(cfg.values["gateway"]["calibration"])
    model = load_calibration(cal) if cal else None
    return run_gateway(cfg, layout, model, sources, exit_when_drained=a.exit_when_drained)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cmd_status(a: argparse.Namespace) -> int:
    from .config import load_config
    from .outbox import read_status

    cfg = load_config(a.config).with_overrides({("gateway", "data_dir"): a.data_dir})
    db = Path(cfg.values["gateway"]["data_dir"]) / "outbox.db"
    if not db.exists():
        raise InputError(
            str(db), "", "no outbox here: has `shelfgate run` started with this data dir?"
        )
    if a.clear_alerts:
        from .outbox import clear_alerts

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
    r = sub.add_parser("run", help="run the gateway daemon")
    r.add_argument("--config", help="gateway.toml (default: built-in defaults, a simulated store)")
    r.add_argument(
        "--source",
        action="append",
        help="source URI (repeatable), e.g. sim:layout.toml?shoppers=20, replay:trace.jsonl",
    )
    r.add_argument("--layout", help="store layout TOML")
    r.add_argument("--calibration", help="calibration JSON")
    r.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    r.add_argument("--data-dir", help="directory of the outbox database")
    r.add_argument("--store", help="store id")
    r.add_argument("--gateway", help="gateway id")
    r.add_argument(
        "--exit-when-drained",
        action="store_true",
        help="exit 0 once the sources are exhausted and every event is acknowledged",
    )
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="what the gateway is doing: connection, backlog, drops")
    s.add_argument("--config")
    s.add_argument("--data-dir")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--clear-alerts", action="store_true", help="acknowledge the alerts (e.g. a reset database)"
    )
    s.set_defaults(func=cmd_status)
    register_offers(sub)


def cmd_offers(a: argparse.Namespace) -> int:
    import datetime as dt
    import sqlite3

    from positioning.offers import parse_catalogue

    from .config import load_config

    cfg = load_config(a.config).with_overrides({("gateway", "data_dir"): a.data_dir})
    db = Path(cfg.values["gateway"]["data_dir"]) / "outbox.db"
    if not db.exists():
        raise InputError(
            str(db), "", "no outbox here: has `shelfgate run` started with this data dir?"
        )
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version, body, received FROM catalogue WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        conn.close()
    if row is None:
        print(
            "no offer catalogue yet: the backend publishes it (retained) on shelfgate/v1/<store>/offers"
        )
        return 0
    cat = parse_catalogue(json.loads(row[1]))
    if a.json:
        print(json.dumps(cat.raw, indent=2))
        return 0
    received = dt.datetime.fromtimestamp(row[2]).isoformat(timespec="seconds")
    print(f"catalogue version {cat.version}, {len(cat.offers)} offers, received {received}")
    for o in sorted(cat.offers, key=lambda o: (-o.priority, o.id)):
        limits = []
        if o.valid_from or o.valid_to:
            f = (
                dt.datetime.fromtimestamp(o.valid_from).date().isoformat()
                if o.valid_from
                else "..."
            )
            t = dt.datetime.fromtimestamp(o.valid_to).date().isoformat() if o.valid_to else "..."
            limits.append(f"valid {f} to {t}")
        if o.windows:
            limits.append(f"{len(o.windows)} weekly window(s)")
        if o.audience:
            limits.append("audience " + ", ".join(o.audience))
        limits.append(f"{o.max_per_tag} per tag per {o.period}")
        if o.cooldown_s:
            limits.append(f"cooldown {o.cooldown_s:g} s")
        print(
            f"  {o.id}: zones {', '.join(o.zones)}; after {o.min_dwell_s:g} s; priority {o.priority}; "
            + "; ".join(limits)
        )
    return 0


def register_offers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser("offers", help="the active offer catalogue")
    o.add_argument("--config")
    o.add_argument("--data-dir")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_offers)
