"""UWB positions: constant-velocity filter, zone lookup with hysteresis, the same dwell detector,
and the DWM1001 source over a pty."""

from __future__ import annotations

import asyncio
import os
import random
import time
import tty
from pathlib import Path

from drivers.advertisement import PositionFix
from drivers.registry import parse_uri
from drivers.serial.source import SerialSource
from drivers.source import SourceContext
from gateway.layoutfile import load_layout
from positioning.dwell import DwellParams
from positioning.position_kalman import PositionFilter, PositionParams
from positioning.tags import TagResolver
from positioning.tracker import TrackerParams, ZoneTracker

ROOT = Path(__file__).parent.parent


def test_filter_follows_a_walk_and_ignores_a_multipath_jump() -> None:
    f = PositionFilter()
    prm = PositionParams()
    rng = random.Random(2)
    est = (0.0, 0.0)
    for k in range(100):  # 1 m/s along x, 10 Hz, 10 cm noise
        t = k * 0.1
        est = f.update(t + rng.gauss(0, 0.1), 5.0 + rng.gauss(0, 0.1), t, 80, prm)
    assert abs(est[0] - 9.9) < 0.3 and abs(est[1] - 5.0) < 0.2
    jump = f.update(25.0, 5.0, 10.0, 80, prm)  # one reflection 15 m off
    assert abs(jump[0] - 10.0) < 0.5


def test_uwb_tag_dwell_with_hysteresis() -> None:
    layout = load_layout(ROOT / "config" / "layout.toml")  # fasteners: x 1..5, y 4..11
    trk = ZoneTracker(
        layout,
        params=TrackerParams(dwell=DwellParams(min_dwell_s=30, gap_s=10)),
        record_segments=True,
    )
    rng = random.Random(1)
    t = 0.0
    for _ in range(600):  # 60 s standing in fasteners, jittering near its edge
        trk.observe_position("uwb:cart7", 4.85 + rng.gauss(0, 0.1), 7.5 + rng.gauss(0, 0.1), t, 70)
        t += 0.1
    for k in range(100):  # walk out to the cross aisle
        trk.observe_position("uwb:cart7", 3.0, 7.5 + 0.1 * k * 0.5 + 4.0 * min(1.0, k / 30), t, 90)
        t += 0.1
    trk.tick(t + 20)
    dwells = [e for e in trk.events if e.kind == "dwell"]
    assert len(dwells) == 1 and dwells[0].zone == "fasteners"
    assert dwells[0].duration >= 55
    zones = [s.zone for s in trk.segments]
    assert zones.count("fasteners") == 1  # no flapping at the edge


def test_dwm1001_source_over_pty(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "usb-SEGGER_J-Link-if00"
    link.symlink_to(os.ttyname(slave))
    os.close(slave)
    line = (
        b"DIST,4,AN0,0E15,1.75,4.55,2.33,1.61,AN1,1516,0.00,4.55,2.20,2.15,AN2,41B1,1.75,0.00,2.20,4.23,"
        b"AN3,089F,0.00,0.00,2.20,4.37,POS,3.10,7.40,0.78,59\r\n"
    )

    async def main() -> list[PositionFix]:
        src = SerialSource(
            parse_uri(f"serial:{link}?protocol=dwm1001&rx=uwb1&tag=uwb:cart7"),
            SourceContext(
                load_layout(ROOT / "config" / "layout.toml"), time.monotonic, TagResolver()
            ),
        )
        gen = src.batches()
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.5)
        cmds = os.read(master, 100)
        assert b"lec" in cmds  # the shell was asked for CSV output
        os.write(master, b"garbled,,\r\n" + line)
        batch = await asyncio.wait_for(task, 5)
        await gen.aclose()
        return batch  # type: ignore[return-value]

    fixes = asyncio.run(main())
    os.close(master)
    assert [(f.tag, f.x, f.y, f.quality) for f in fixes] == [("uwb:cart7", 3.1, 7.4, 59)]
