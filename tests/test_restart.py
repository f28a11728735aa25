"""A restart does not split a stay (R-restart): the open stays are kept in the outbox (by the
tag's pseudonym) and go on after a restart shorter than the dwell gap; a tag that does not come
back ends its stay where it was last seen, with the ids a run without the restart gives."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import orjson

from drivers.advertisement import Advertisement
from gateway.assembly import build_pipeline
from gateway.clock import FakeClock
from gateway.config import config_from_dict
from gateway.events import WireEvent
from gateway.layoutfile import load_layout
from positioning.frames import ibeacon_payload

from .conftest import ROOT
from .mqtt_helpers import free_port, wait_exit
from .test_daemon_delivery import start_daemon, write_config
from .test_serial import Device

LAYOUT = ROOT / "config" / "layout.toml"


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not made yet
        return []


def test_daemon_restart_continues_the_stay(tmp_path: Path) -> None:
    """A tag stands at the fastener shelf; the daemon is restarted 4 s into the stay: the
    threshold event dates the stay from its first start, and there is one."""
    dev = Device(tmp_path / "usb-a", "bgapi", rssi=-52)
    dev.start()
    cfg = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}", min_dwell=10.0)
    db = tmp_path / "data" / "outbox.db"
    src = f"serial:{dev.link}?protocol=bgapi&rx=rx01"
    proc = start_daemon(cfg, "--source", src)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not rows(db, "SELECT start FROM stays"):
            time.sleep(0.2)
        ((start,),) = rows(db, "SELECT start FROM stays")
        time.sleep(max(0.0, float(start) + 4.0 - time.time()))
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 20) == 0
        assert not rows(db, "SELECT body FROM events WHERE type = 'dwell_threshold'")
        proc = start_daemon(cfg, "--source", src)
        deadline = time.time() + 40
        found: list[tuple[object, ...]] = []
        while time.time() < deadline and not found:
            time.sleep(0.2)
            found = rows(db, "SELECT body FROM events WHERE type = 'dwell_threshold'")
        assert len(found) == 1, found
        ev = orjson.loads(found[0][0])  # type: ignore[arg-type]
        assert abs(ev["start"] - float(start)) < 0.01  # the stay from before the restart
        assert ev["zone"] == "fasteners" and ev["duration_s"] == 10.0
    finally:
        proc.send_signal(signal.SIGTERM)
        wait_exit(proc, 20)
        dev.running = False


def test_a_tag_that_does_not_come_back_ends_where_it_was_last_seen() -> None:
    """Through the real pipeline, on a fake clock: 30 s at a shelf, then silence. With a restart
    (suspend, a new pipeline, resume) 25 s in and the tag never heard again, the events are
    exactly those of the run without the restart: same ids, start and end."""
    cfg = config_from_dict(
        {"privacy": {"secret": "restart-test-secret-01"}, "pipeline": {"min_dwell_s": 10.0}},
        "<test>",
    )
    layout = load_layout(LAYOUT)
    frame = {76: ibeacon_payload("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, 2)}

    def run(restart: bool) -> list[WireEvent]:
        clock = FakeClock(mono=1000.0)
        p = build_pipeline(cfg, layout, None, clock=clock)
        out: list[WireEvent] = []
        while clock.mono() < 1030.0:
            out += p.feed([Advertisement("rx01", "AA:BB", -50, frame, {}, clock.mono())])
            clock.advance(0.5)
        if restart:
            kept = p.suspend()
            assert kept and all(s.key.startswith("p:") for s in kept)  # no raw id kept
            clock = FakeClock(mono=50.0, wall_offset=clock.wall() - 50.0)  # a new boot
            p = build_pipeline(cfg, layout, None, clock=clock)
            p.resume(kept)
        for _ in range(60):  # a minute of silence
            clock.advance(1.0)
            out += p.advance(clock.mono())
        return [e for e in out if e.type in ("dwell", "dwell_threshold")]

    plain, restarted = run(False), run(True)
    dwell = [e for e in plain if e.type == "dwell"]
    assert len(dwell) == 1 and dwell[0].end - dwell[0].start > 20.0
    got = [(e.type, e.event_id, e.zone, round(e.start, 3), round(e.end, 3)) for e in restarted]
    want = [(e.type, e.event_id, e.zone, round(e.start, 3), round(e.end, 3)) for e in plain]
    assert got == want
