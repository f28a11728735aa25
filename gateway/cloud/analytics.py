"""`shelfgate paths`: the k-anonymous shopper-path report of one store, read from the SQL
functions of migration 2 (gateway/cloud/analytics_sql.py), as text, JSON or a plot."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from positioning.errors import InputError

from .migrations import apply_migrations

QUERIES = {
    "zones": "SELECT hour, zone, visits, tags FROM shelfgate_zone_hours(%(k)s, %(tz)s)",
    "dwell": "SELECT hour, zone, label, visits, tags FROM shelfgate_dwell_histogram(%(k)s, %(tz)s)",
    "transitions": "SELECT hour, from_zone, to_zone, moves, tags"
    " FROM shelfgate_transitions(%(k)s, %(tz)s)",
    "conversion": "SELECT hour, zone, dwell_tags, offer_tags, conversion"
    " FROM shelfgate_conversion(%(k)s, %(tz)s)",
}
COLUMNS = {
    "zones": ("hour", "zone", "visits", "tags"),
    "dwell": ("hour", "zone", "dwell", "visits", "tags"),
    "transitions": ("hour", "from", "to", "moves", "tags"),
    "conversion": ("hour", "zone", "dwell_tags", "offer_tags", "conversion"),
}


@dataclass(frozen=True, slots=True)
class PathReport:
    store: str
    k: int
    timezone: str
    tables: dict[str, list[tuple[Any, ...]]]


def fetch_report(
    conn: psycopg.Connection[Any],
    store: str,
    k: int = 5,
    tz: str = "UTC",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> PathReport:
    if k < 1:
        raise InputError("--k", str(k), "k must be at least 1")
    params = {"k": k, "tz": tz, "store": store, "since": since, "until": until}
    where = (
        " WHERE store = %(store)s AND (%(since)s::timestamp IS NULL OR hour >= %(since)s)"
        " AND (%(until)s::timestamp IS NULL OR hour < %(until)s) ORDER BY 1, 2, 3"
    )
    tables = {name: conn.execute(sql + where, params).fetchall() for name, sql in QUERIES.items()}
    return PathReport(store, k, tz, tables)


def render_text(rep: PathReport) -> str:
    lines = [f"store {rep.store}: cells with fewer than {rep.k} distinct tags are suppressed"]
    lines.append(f"hours in {rep.timezone}")
    for name, rows in rep.tables.items():
        lines.append("")
        lines.append(f"{name} ({len(rows)} cells)")
        lines.append("  " + "  ".join(f"{c:>16}" for c in COLUMNS[name]))
        for r in rows:
            lines.append("  " + "  ".join(f"{_cell(v):>16}" for v in r))
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:00")
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def render_json(rep: PathReport) -> bytes:
    out: dict[str, Any] = {"store": rep.store, "k": rep.k, "timezone": rep.timezone}
    for name, rows in rep.tables.items():
        out[name] = [dict(zip(COLUMNS[name], r, strict=True)) for r in rows]
    return orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC)


def _when(s: str | None, flag: str) -> dt.datetime | None:
    if s is None:
        return None
    try:
        return dt.datetime.fromisoformat(s)
    except ValueError:
        raise InputError(
            flag, s, "expected an ISO date or date/time, e.g. 2026-01-01T10:00"
        ) from None


def run_report(a: argparse.Namespace) -> int:
    layout = None
    if a.layout:
        from gateway.layoutfile import load_layout

        layout = load_layout(a.layout)
    tz = a.timezone or (layout.timezone if layout is not None else "UTC")
    try:
        conn = psycopg.connect(a.db, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as e:
        raise InputError("--db", a.db, f"cannot connect: {' '.join(str(e).split())}") from None
    with conn:
        apply_migrations(conn)
        rep = fetch_report(
            conn, a.store, a.k, tz, _when(a.since, "--since"), _when(a.until, "--until")
        )
    if a.json:
        sys.stdout.buffer.write(render_json(rep) + b"\n")
    else:
        print(render_text(rep))
    if a.plot:
        from .plot import plot_report

        plot_report(rep, layout, a.plot)
        print(f"plot written to {a.plot}", file=sys.stderr)
    return 0
