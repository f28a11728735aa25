"""`shelfgate offers`: the offer catalogue the gateway holds (from its outbox database)."""

from __future__ import annotations

import argparse
import json

from positioning.errors import InputError


def cmd_offers(a: argparse.Namespace) -> int:
    import datetime as dt
    import sqlite3

    from gateway.config import load_config
    from positioning.offers import parse_catalogue

    db = load_config(a.config).with_overrides(data_dir=a.data_dir).outbox_path
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser("offers", help="the active offer catalogue")
    o.add_argument("--config")
    o.add_argument("--data-dir")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_offers)
