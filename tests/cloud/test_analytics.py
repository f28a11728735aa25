"""k-anonymous shopper-path analytics: no cell with fewer than k distinct tags ever comes out."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import psycopg

from gateway.cloud.analytics import fetch_report
from gateway.cloud.migrations import apply_migrations
from gateway.cloud.schema import parse_message
from gateway.cloud.store import write_batch
from tests.conftest import ROOT, shelfgate

from .publish import batch, event

T0 = dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC).timestamp()


def load(db: str, events: list[dict[str, Any]]) -> None:
    """Through the consumer's own parsing and writer (seq per gateway assigned here)."""
    for i, e in enumerate(events, start=1):
        e["seq"] = i
        e["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, str(i)))
    with psycopg.connect(db, autocommit=True) as conn:
        apply_migrations(conn)
        for k in range(0, len(events), 100):
            topic, payload = batch(events[k : k + 100], store="st", gateway="gw")
            parsed = parse_message(topic, payload)
            assert not parsed.dead, parsed.dead
            write_batch(conn, [parsed])


def stay(
    tag: int, zone: str, start_min: float, minutes: float, kind: str = "dwell"
) -> dict[str, Any]:
    start = T0 + start_min * 60
    extra: dict[str, Any] = {}
    if kind == "offer_triggered":
        extra = {"offer_id": "o1", "catalogue_version": 1, "payload_ref": "1/o1"}
    return event(
        0,
        store="st",
        gateway="gw",
        type=kind,
        tag=f"p:{tag:032x}",
        zone=zone,
        start=start,
        end=start + minutes * 60,
        duration_s=minutes * 60,
        **extra,
    )


def fixture_events() -> list[dict[str, Any]]:
    evs = []
    for t in range(6):  # six shoppers: paint, then garden
        evs.append(stay(t, "paint", 0 + t, 5))
        evs.append(stay(t, "garden", 10 + t, 3))
        evs.append(stay(t, "garden", 10 + t, 1, "offer_triggered"))
    for t in range(4):  # four of them go on to tools: below k = 5
        evs.append(stay(t, "tools", 20 + t, 2))
    for t in range(3):  # three of six got an offer in paint: 1..k-1 offer tags
        evs.append(stay(t, "paint", 0 + t, 1, "offer_triggered"))
    return evs


def all_cells(rep: Any) -> list[tuple[str, tuple[Any, ...]]]:
    return [(name, r) for name, rows in rep.tables.items() for r in rows]


def test_cells_below_k_never_appear(pg_url: str) -> None:
    load(pg_url, fixture_events())
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rep = fetch_report(conn, "st", k=5)
        low = fetch_report(conn, "st", k=4)
    cells = all_cells(rep)
    assert cells, "nothing at all came out"
    assert not [c for c in cells if "tools" in c[1]], "a zone seen by 4 tags leaked at k=5"
    assert {r[1] for r in rep.tables["zones"]} == {"paint", "garden"}
    assert [(r[1], r[2]) for r in rep.tables["transitions"]] == [("paint", "garden")]
    # paint: 6 dwelt, 3 got an offer (1..k-1): suppressed; garden: 6 of 6
    assert [(r[1], r[2], r[3]) for r in rep.tables["conversion"]] == [("garden", 6, 6)]
    hist = {(r[1], r[2]): r[3] for r in rep.tables["dwell"]}
    assert hist == {("paint", "5-10 min"): 6, ("garden", "2-5 min"): 6}
    for name, r in cells:
        tags = r[-1] if name != "conversion" else r[2]
        assert tags >= 5, (name, r)
    # the same data at k = 4: the tools cells appear, so the suppression above was k's doing
    assert "tools" in {r[1] for r in low.tables["zones"]}
    assert ("garden", "tools") in {(r[1], r[2]) for r in low.tables["transitions"]}


def test_random_populations_respect_k(pg_url: str) -> None:
    rng = random.Random(7)
    zones = ["paint", "tools", "garden", "timber", "tiles", "lighting"]
    evs = []
    for t in range(40):
        at = rng.uniform(0, 170)
        for _ in range(rng.randint(1, 5)):
            zone = rng.choices(zones, weights=[8, 5, 3, 2, 1, 1])[0]
            minutes = rng.choice([0.5, 1.5, 3, 7, 15, 25])
            evs.append(stay(t, zone, at, minutes))
            at += minutes + rng.uniform(0.5, 20)
    load(pg_url, evs)
    truth: dict[tuple[dt.datetime, str], set[str]] = defaultdict(set)
    for e in evs:
        hour = dt.datetime.fromtimestamp(e["start"], dt.UTC).replace(
            minute=0, second=0, microsecond=0
        )
        truth[(hour.replace(tzinfo=None), e["zone"])].add(e["tag"])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for k in (2, 5, 8):
            rep = fetch_report(conn, "st", k=k)
            got = {(r[0], r[1]): r[3] for r in rep.tables["zones"]}
            want = {key: len(tags) for key, tags in truth.items() if len(tags) >= k}
            assert got == want, k
            for name, r in all_cells(rep):
                assert (r[-1] if name != "conversion" else r[2]) >= k, (k, name, r)


def test_paths_command_json_and_plot(tmp_path: Path, pg_url: str) -> None:
    load(pg_url, fixture_events())
    png = tmp_path / "paths.png"
    layout = ROOT / "config" / "layout.toml"
    args = ["paths", "--db", pg_url, "--store", "st", "--json", "--plot", str(png)]
    out = subprocess.run(
        shelfgate(*args, "--layout", str(layout), "--timezone", "UTC"),
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    rep = json.loads(out.stdout)
    assert rep["k"] == 5 and {c["zone"] for c in rep["zones"]} == {"paint", "garden"}
    assert "tools" not in orjson.dumps(rep).decode()
    assert png.stat().st_size > 10_000
    bad = subprocess.run(
        shelfgate("paths", "--db", pg_url, "--store", "st", "--k", "0"),
        cwd=ROOT,
        capture_output=True,
    )
    assert bad.returncode == 2 and b"k must be at least 1" in bad.stderr
