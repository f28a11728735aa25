"""Calibration: on the real Danis et al. recordings, and recovering a simulated store's receivers."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gateway.layoutfile import load_layout
from positioning.calibration import Stand, calibrate
from positioning.storesim import SimParams, StoreSimulation

from .conftest import DANIS, ROOT, shelfgate

TAG = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:2:1"


@pytest.fixture(scope="module")
def danis_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not DANIS.exists():
        pytest.skip("../shared/data/danis-static is not beside the repository")
    d = tmp_path_factory.mktemp("danis")
    labels = d / "labels.jsonl"
    with (
        open(DANIS / "points.csv", encoding="utf-8") as fh,
        open(labels, "w", encoding="utf-8") as out,
    ):
        for r in csv.DictReader(fh):
            out.write(
                json.dumps(
                    {
                        "tag": TAG,
                        "zone": None,
                        "start": float(r["start"]),
                        "end": float(r["end"]),
                        "x": float(r["x"]),
                        "y": float(r["y"]),
                        "z": float(r["z"]),
                    }
                )
                + "\n"
            )
    cal = d / "cal.json"
    res = subprocess.run(
        shelfgate(
            "calibrate",
            "--layout",
            str(DANIS / "layout.toml"),
            "--trace",
            str(DANIS / "points.jsonl.gz"),
            "--labels",
            str(labels),
            "--out",
            str(cal),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "typical error" in res.stdout
    return json.loads(cal.read_text())


def test_real_data_path_loss_matches_published_fit(danis_fit: dict) -> None:
    # SOURCE.md: RSSI ~ -61.0 - 14.9 log10(d), ~4.8 dB residual over the raw samples
    fit = danis_fit["fit"]
    assert fit["shared_offset_db"] == pytest.approx(-61.0, abs=2.0)
    assert fit["slope_db_per_decade"] == pytest.approx(14.9, abs=2.0)
    assert fit["residual_db"] < 5.0  # per-stand means: below the raw-sample residual
    assert fit["stands_used"] == 45


def test_real_data_mounting_heights(danis_fit: dict) -> None:
    # SOURCE.md: -21.1 log10(d) for receivers at 1.22 m, -14.0 log10(d) for those at 2.30 m
    layout = load_layout(DANIS / "layout.toml")
    low = [r.id for r in layout.receivers if r.z < 2.0]
    rx = danis_fit["radio_model"]["receivers"]
    slope_low = 10 * np.mean([rx[i]["exponent"] for i in low])
    slope_high = 10 * np.mean([rx[r.id]["exponent"] for r in layout.receivers if r.id not in low])
    assert slope_low > slope_high + 2.0
    assert slope_low == pytest.approx(21.1, abs=4.0)
    assert slope_high == pytest.approx(14.0, abs=2.5)


def test_recovers_simulated_receiver_gains() -> None:
    layout = load_layout(ROOT / "config" / "layout.toml")
    sim = StoreSimulation(layout, SimParams(shoppers=0, devices=0, seed=9))
    stands = [(*z.centroid, z.id) for z in layout.zones] + [
        (x, 12.0, None) for x in (3.0, 15.0, 27.0)
    ]
    _, done = sim.add_technician(stands, 5.0, 40.0)
    ch = sim.chunk(0.0, done[-1][1] + 5.0)
    res = calibrate(
        layout,
        zip(ch.rx.tolist(), ch.rssi.tolist(), ch.t.tolist(), strict=True),
        [Stand(z, a + 2, b - 2, x, y) for a, b, x, y, z in done],
    )
    fitted = [res.model.for_receiver(r.id).offset_db for r in layout.receivers]
    assert np.corrcoef(fitted, sim.rx_gain)[0, 1] > 0.7  # shadowing blurs it; random would be ~0
    assert res.stand_accuracy is not None and res.stand_accuracy >= 0.9
    assert "rx01" in res.report()


def test_bad_labels_name_the_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"tag": "x", "zone": "a", "start": 1, "end": 2}\n{"zone": "a"}\n')
    res = subprocess.run(
        shelfgate(
            "calibrate",
            "--layout",
            str(ROOT / "config" / "layout.toml"),
            "--trace",
            str(labels),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "c.json"),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2
    assert f"{labels}: line 2:" in res.stderr
    assert "Traceback" not in res.stderr
