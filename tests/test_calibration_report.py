"""The calibration report: unheard and moved receivers, unknown zones, one consistent verdict."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from gateway.layoutfile import load_layout
from positioning.calibration import CalibrationResult, Stand, calibrate
from positioning.errors import CalibrationError, ShelfgateError
from positioning.layout import Layout, Receiver
from positioning.storesim import SimParams, StoreSimulation

from .conftest import ROOT, shelfgate

LAYOUT = ROOT / "config" / "layout.toml"


def quick_walk(sim_layout: Layout, layout: Layout, seed: int = 3) -> CalibrationResult:
    """One 40 s stand per zone (at its centroid, labels without positions) in a store whose
    real receivers are `sim_layout`'s, calibrated against what the installer wrote: `layout`."""
    sim = StoreSimulation(sim_layout, SimParams(shoppers=0, devices=0, seed=seed))
    spots = [(*z.centroid, z.id) for z in sim_layout.zones]
    _, done = sim.add_technician(list(spots), 5.0, 40.0)
    ch = sim.chunk(0.0, done[-1][1] + 5.0)
    sightings = zip(ch.rx.tolist(), ch.rssi.tolist(), ch.t.tolist(), strict=True)
    return calibrate(layout, sightings, [Stand(z, a + 2, b - 2) for a, b, _, _, z in done])


@pytest.fixture(scope="module")
def layout() -> Layout:
    return load_layout(LAYOUT)


def test_moved_receiver_is_detected(layout: Layout) -> None:
    rx = list(layout.receivers)
    # rx03 really hangs 12 m further along (the installer moved it and kept the old layout)
    rx[2] = dataclasses.replace(rx[2], x=rx[2].x + 12.0)
    res = quick_walk(dataclasses.replace(layout, receivers=tuple(rx)), layout)
    assert [m.id for m in res.moved] == ["rx03"]
    m = res.moved[0]
    assert abs(m.x - rx[2].x) < 4.0
    report = res.report()
    assert "rx03" in report and "LOOKS MOVED" in report
    assert "Verdict: not good enough" in report and "fix receivers rx03" in report


def test_no_receiver_reported_moved_when_none_is(layout: Layout) -> None:
    res = quick_walk(layout, layout)
    assert res.moved == []
    assert "LOOKS MOVED" not in res.report()


def test_unheard_receiver_gets_clear_advice(layout: Layout) -> None:
    # the layout lists a receiver that is not there (unplugged): it never hears the beacon
    with_dead = dataclasses.replace(
        layout, receivers=(*layout.receivers, Receiver("rx99", 30.0, 22.0, 3.0))
    )
    res = quick_walk(layout, with_dead)
    report = res.report()
    line = next(ln for ln in report.splitlines() if "rx99" in ln)
    assert "never heard the reference beacon" in line and "check it is powered" in line
    assert "fix receivers rx99" in report
    assert json.dumps(res.to_json("x"))  # serialisable with an unfitted receiver


def test_report_agrees_with_itself() -> None:
    # one receiver per two zones: this walk has misclassified stands (83% right)
    sparse = load_layout(ROOT / "config" / "layout-sparse.toml")
    res = quick_walk(sparse, sparse, seed=4)
    report = res.report()
    wrong = [v for v in res.stands if not v.correct]
    assert wrong
    assert report.count("misclassified:") == len(wrong)
    for v in wrong:
        assert f"the stand in {v.zone} " in report
    assert "well separated" not in report and "every stand agrees" not in report
    assert "Verdict: not good enough" in report
    assert all(f"{v.zone}" in report.splitlines()[-1] for v in wrong)


def test_unknown_zone_ids_are_a_clear_error(layout: Layout) -> None:
    stands = [Stand("fasteners", 0, 10), Stand("garden-centre", 10, 20), Stand("pets", 20, 30)]
    with pytest.raises(CalibrationError, match="garden-centre, pets") as e:
        calibrate(layout, [(0, -60.0, 1.0)], stands)
    assert isinstance(e.value, ShelfgateError)


def test_cli_unknown_zones_and_too_little_data_no_traceback(tmp_path: Path) -> None:
    tag = "ibeacon:c0ffee00-5e1f-4a7e-9a7e-000000000001:0:1"
    trace = tmp_path / "cal.jsonl"
    mfg = "0215c0ffee005e1f4a7e9a7e00000000000100000001c5"
    trace.write_text(
        "".join(
            json.dumps(
                {"t": 1767261600.0 + k, "rx": "rx01", "addr": "A", "rssi": -60, "mfg": {"76": mfg}}
            )
            + "\n"
            for k in range(20)
        )
    )
    for zone, expect in (
        ("nowhere", "zones the layout"),
        ("fasteners", "too little calibration data"),
    ):
        labels = tmp_path / "labels.jsonl"
        labels.write_text(
            json.dumps({"tag": tag, "zone": zone, "start": 1767261599.0, "end": 1767261630.0})
            + "\n"
        )
        res = subprocess.run(
            shelfgate(
                "calibrate",
                "--layout",
                str(LAYOUT),
                "--trace",
                str(trace),
                "--labels",
                str(labels),
                "--out",
                str(tmp_path / "c.json"),
            ),
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert res.returncode == 2, res.stderr
        assert expect in res.stderr and "Traceback" not in res.stderr
