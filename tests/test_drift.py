"""Reference beacons: a receiver's drift since calibration found, corrected and reported."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.layoutfile import layout_from_dict, load_layout
from positioning.drift import ALERT_DB, DriftMonitor
from positioning.errors import InputError
from positioning.layout import Layout, Receiver, Reference, Zone
from positioning.pathloss import RadioModel
from positioning.storesim import SimParams, StoreSimulation
from positioning.tracker import ZoneTracker

from .conftest import ROOT, shelfgate
from .mqtt_helpers import free_port
from .remote_helpers import running_daemon
from .web_helpers import wait_for

SHOTS = os.environ.get("SHELFGATE_DRIFT_SHOTS")
UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
REF_A, REF_B = f"ibeacon:{UUID}:7:1", f"ibeacon:{UUID}:7:2"
SHOPPER = f"ibeacon:{UUID}:1:9"
RECEIVERS = (Receiver("rx0", 0.0, 0.0), Receiver("rx1", 10.0, 0.0), Receiver("rx2", 5.0, 8.0))
ZONE = Zone("z", "Z", ((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)))
LAYOUT = Layout(
    "drift",
    "UTC",
    RECEIVERS,
    (ZONE,),
    references=(Reference(REF_A, 2.0, 2.0), Reference(REF_B, 8.0, 6.0)),
)
BASE = {"rx0": -60.0, "rx1": -70.0, "rx2": -75.0}


def feed(mon: DriftMonitor, t0: float, t1: float, shift: dict[int, float], rng: np.random.Generator,
         deaf: tuple[tuple[str, int], ...] = ()) -> None:  # fmt: skip
    """Both references heard by every receiver twice a second, levels moved by `shift`."""
    for t in np.arange(t0, t1, 0.5):
        for tag, extra in ((REF_A, 0.0), (REF_B, -5.0)):
            rx = [i for i in range(3) if (tag, i) not in deaf]
            lv = [BASE[f"rx{i}"] + extra + shift.get(i, 0.0) + rng.normal(0, 3) for i in rx]
            mon.take([tag] * len(rx), np.array(rx), np.round(np.array(lv)), np.full(len(rx), t))
        mon.tick(float(t))


def model() -> RadioModel:
    return RadioModel(
        references={
            REF_A: dict(BASE),
            REF_B: {k: v - 5.0 for k, v in BASE.items()},
        }
    )


def test_a_receiver_that_changed_is_found_corrected_and_reported() -> None:
    mon = DriftMonitor(LAYOUT, model())
    rng = np.random.default_rng(1)
    feed(mon, 0.0, 300.0, {}, rng)
    assert all(d.applied_db == 0.0 for d in mon.report()), mon.report()
    feed(mon, 300.0, 900.0, {1: -8.0}, rng)  # a pallet in front of rx1
    rep = {d.receiver: d for d in mon.report()}
    assert rep["rx1"].shift_db == pytest.approx(-8.0, abs=0.7)
    assert rep["rx1"].applied_db == pytest.approx(rep["rx1"].shift_db)
    assert rep["rx0"].applied_db == 0.0 and rep["rx2"].applied_db == 0.0  # noise: no correction
    assert rep["rx1"].alert is not None and "weaker" in rep["rx1"].alert
    assert rep["rx0"].alert is None
    # a shopper's sighting at rx1 is raised by the correction; references never pass
    tags, _, rssi, _ = mon.take(
        [SHOPPER, REF_A], np.array([1, 1]), np.array([-80.0, -70.0]), np.array([901.0, 901.0])
    )
    assert list(tags) == [SHOPPER]
    assert rssi[0] == pytest.approx(-80.0 - rep["rx1"].applied_db)


def test_report_only_never_corrects() -> None:
    mon = DriftMonitor(LAYOUT, model(), compensate=False)
    feed(mon, 0.0, 600.0, {1: -8.0}, np.random.default_rng(2))
    assert abs((mon.report()[1].shift_db or 0) + 8.0) < 1.0
    _, _, rssi, _ = mon.take([SHOPPER], np.array([1]), np.array([-80.0]), np.array([601.0]))
    assert rssi[0] == -80.0


def test_a_receiver_that_hears_no_reference_any_more_is_reported() -> None:
    mon = DriftMonitor(LAYOUT, model())
    feed(mon, 0.0, 600.0, {}, np.random.default_rng(3), deaf=((REF_A, 2), (REF_B, 2)))
    rep = {d.receiver: d for d in mon.report()}
    assert rep["rx2"].missing == tuple(sorted((REF_A, REF_B)))
    assert rep["rx2"].alert is not None and "no longer hears" in rep["rx2"].alert
    assert rep["rx0"].missing == () and rep["rx0"].alert is None


def test_without_a_recorded_baseline_the_first_window_is_it() -> None:
    mon = DriftMonitor(LAYOUT, RadioModel())
    rng = np.random.default_rng(4)
    feed(mon, 0.0, 400.0, {}, rng)
    feed(mon, 400.0, 1000.0, {0: 7.0}, rng)
    rep = {d.receiver: d for d in mon.report()}
    assert rep["rx0"].shift_db == pytest.approx(7.0, abs=0.7)
    assert rep["rx0"].applied_db >= ALERT_DB


def test_simulated_gain_steps_are_measured() -> None:
    # the simulator's own physics: two receivers of the example store change gain mid-run
    layout = load_layout(ROOT / "config" / "layout.toml")
    refs = tuple(
        Reference(f"ibeacon:{UUID}:7:{i + 1}", r.x, r.y, r.z, r.id)
        for i, r in enumerate(layout.receivers)
    )
    import dataclasses

    layout = dataclasses.replace(layout, references=refs)
    sim = StoreSimulation(layout, SimParams(shoppers=0, devices=0, seed=5))
    sim.gain_steps = [(2, 0.0, -9.0), (5, 0.0, 6.0)]
    base = StoreSimulation(layout, SimParams(shoppers=0, devices=0, seed=5))  # refs powered
    from positioning.drift import reference_levels

    ch = base.chunk(0.0, 120.0)
    tags = [p.tag or "" for p in base.persons]
    levels = reference_levels(
        layout,
        [(tags[p], i, float(v)) for p, i, v in zip(ch.person, ch.rx, ch.rssi, strict=True)],
    )
    tracker = ZoneTracker(layout, RadioModel(references=levels))
    ch = sim.chunk(0.0, 420.0)
    for t in range(420):
        lo, hi = np.searchsorted(ch.t, [t, t + 1])
        tracker.observe_batch(
            [tags[p] for p in ch.person[lo:hi].tolist()],
            ch.rx[lo:hi],
            ch.rssi[lo:hi].astype(float),
            ch.t[lo:hi],
        )
        tracker.tick(t + 1.0)
    assert tracker.drift is not None
    rep = {d.receiver: d for d in tracker.drift.report()}
    ids = layout.receiver_ids
    assert rep[ids[2]].applied_db == pytest.approx(-9.0, abs=1.5)
    assert rep[ids[5]].applied_db == pytest.approx(6.0, abs=1.5)
    others = [abs(rep[r].applied_db) for r in ids if r not in (ids[2], ids[5])]
    assert max(others) < 1.5
    assert tracker.active_tags == 0  # references are never tracked as shoppers


def test_layout_references_are_checked() -> None:
    raw = {
        "store": {"id": "s"},
        "receivers": [{"id": "rx1", "x": 1.0, "y": 2.0, "z": 3.0}],
        "references": [{"tag": REF_A, "x": 4.0, "y": 5.0}, {"tag": REF_B, "receiver": "rx1"}],
    }
    lay = layout_from_dict(raw, "L.toml")
    assert lay.references[0] == Reference(REF_A, 4.0, 5.0)
    assert lay.references[1] == Reference(REF_B, 1.0, 2.0, 3.0, "rx1")
    bad = [
        ({"tag": REF_A, "receiver": "rx9"}, "references[0].receiver", "rx9"),
        ({"tag": "A1:B2", "x": 1.0, "y": 1.0}, "references[0].tag", "tag id"),
        ({"x": 1.0, "y": 1.0}, "references[0].tag", "tag id"),
        ({"tag": REF_A, "x": 1.0}, "references[0].y", "missing"),
        ({"tag": REF_A, "receiver": "rx1", "x": 1.0}, "references[0]", "not both"),
        ({"tag": REF_A, "x": 1.0, "y": 1.0, "height": 2}, "references[0].height", "unknown"),
    ]
    for ref, where, words in bad:
        with pytest.raises(InputError) as e:
            layout_from_dict({**raw, "references": [ref]}, "L.toml")
        msg = str(e.value)
        assert "L.toml" in msg and where in msg and words in msg, msg


def layout_with_references(d: Path) -> tuple[Path, Layout]:
    """The example store with a beacon built into every receiver (they hear each other)."""
    lay = load_layout(ROOT / "config" / "layout.toml")
    extra = "".join(
        f'\n[[references]]\ntag = "ibeacon:{UUID}:7:{i + 1}"\nreceiver = "{r.id}"\n'
        for i, r in enumerate(lay.receivers)
    )
    path = d / "layout.toml"
    path.write_text((ROOT / "config" / "layout.toml").read_text() + extra)
    return path, load_layout(path)


def write_sim_trace(
    lay: Layout,
    out: Path,
    seed: int,
    shoppers: int,
    steps: list[tuple[int, float, float]],
    duration: float = 400.0,
    labels: Path | None = None,
) -> None:
    """A simulated trace of `lay` with its references powered and receivers' gains stepped;
    with `labels`, a technician's walk (one stand per zone) and its labels instead of time."""
    from drivers.trace.writer import write_trace

    sim = StoreSimulation(lay, SimParams(shoppers=shoppers, devices=0, seed=seed))
    sim.gain_steps = steps
    if labels is not None:
        tag, stands = sim.add_technician([(*z.centroid, z.id) for z in lay.zones], 5.0, 20.0)
        t0 = sim.p.start_time
        labels.write_text(
            "".join(
                json.dumps({"tag": tag, "zone": z, "start": t0 + a + 2, "end": t0 + b - 2}) + "\n"
                for a, b, _, _, z in stands
            )
        )
        duration = stands[-1][1] + 5.0
    with open(out, "w") as fh:
        write_trace(sim, duration, fh)


def test_calibrate_records_and_replay_uses_the_references(tmp_path: Path) -> None:
    layout, lay = layout_with_references(tmp_path)
    labels = tmp_path / "labels.jsonl"
    cal_trace = tmp_path / "cal.jsonl"
    write_sim_trace(lay, cal_trace, 1, 0, [], labels=labels)
    res = subprocess.run(
        shelfgate("calibrate", "--layout", str(layout), "--trace", str(cal_trace), "--labels",
                  str(labels), "--out", str(tmp_path / "cal.json")),
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    cal = json.loads((tmp_path / "cal.json").read_text())
    refs = cal["radio_model"]["references"]
    assert len(refs) == len(lay.references) and all(len(v) >= 3 for v in refs.values())

    # `check` says whether the calibration knows the references' levels
    old = json.loads((tmp_path / "cal.json").read_text())
    old["radio_model"].pop("references")
    (tmp_path / "old-cal.json").write_text(json.dumps(old))
    for cal_file, words in (
        ("cal.json", f"records the levels of all {len(lay.references)} reference beacons"),
        ("old-cal.json", "drift is measured from each start instead of from the calibration"),
    ):
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(
            f'[gateway]\nlayout = "{layout}"\ncalibration = "{tmp_path / cal_file}"\n'
            f'data_dir = "{tmp_path / "data"}"\n[mqtt]\nbroker = "mqtt://127.0.0.1:1"\n'
            f'[[sources]]\nuri = "replay:{cal_trace}"\n'
        )
        res = subprocess.run(
            shelfgate("check", "--config", str(cfg)), capture_output=True, text=True, cwd=ROOT
        )
        assert words in res.stdout, res.stdout

    shopped = tmp_path / "shop.jsonl"
    write_sim_trace(lay, shopped, 2, 5, [(3, 0.0, -9.0)])
    res = subprocess.run(
        shelfgate("replay", str(shopped), "--layout", str(layout), "--calibration",
                  str(tmp_path / "cal.json"), "--events", str(tmp_path / "ev.jsonl"),
                  "--timeline", str(tmp_path / "tl.jsonl"), "--raw-ids"),
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rx3 = lay.receivers[3].id
    assert f"receiver {rx3} hears them -" in res.stderr, res.stderr
    assert f"receiver {rx3} hears the reference beacons" in res.stderr  # 9 dB: an alert
    ref_tags = {r.tag for r in lay.references}
    timeline = [json.loads(x) for x in (tmp_path / "tl.jsonl").read_text().splitlines()]
    assert timeline and not ref_tags & {s["tag"] for s in timeline}


def test_the_daemon_reports_drift_in_metrics_and_status(tmp_path: Path) -> None:
    # no calibration: the first 5 minutes are the baseline; rx index 3 loses 9 dB at 5.5 min
    layout, lay = layout_with_references(tmp_path)
    trace = tmp_path / "trace.jsonl"
    write_sim_trace(lay, trace, 3, 3, [(3, 330.0, -9.0)], duration=600.0)
    rx3 = lay.receivers[3].id
    port = free_port()
    source = f"replay:{trace}?speed=100"
    with running_daemon(tmp_path, web=f"127.0.0.1:{port}", layout=layout, source=source) as r:

        def drift_in_metrics() -> float | None:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            for fam in text_string_to_metric_families(text):
                if fam.name == "shelfgate_receiver_drift_db":
                    got = {s.labels["receiver"]: s.value for s in fam.samples}
                    if got.get(rx3, 0.0) < -6.0:
                        return got[rx3]
            return None

        assert wait_for("rx3's drift in /metrics", drift_in_metrics, 60.0) < -6.0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/state", timeout=5) as resp:
            web = json.loads(resp.read())  # what the map's receiver table shows
        row = next(x for x in web["receivers"] if x["id"] == rx3)
        assert row["drift_db"] < -6.0 and "weaker" in row["drift_alert"], row
        reply = r.backend.reply(r.backend.command("status"))  # the status message, now
        assert reply["ok"], reply
        st = reply["result"]
        assert st["drift"][rx3]["applied_db"] < -6.0, st["drift"]
        assert any(rx3 in a and "weaker" in a for a in st["alerts"]), st["alerts"]
        others = [v["applied_db"] for k, v in st["drift"].items() if k != rx3]
        assert others and max(abs(v) for v in others) < 1.5
        if SHOTS:  # SHELFGATE_DRIFT_SHOTS=dir: the map with the drifted receiver, to look at
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                page = b.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#rx-table .drift")
                page.screenshot(path=f"{SHOTS}/web-drift.png", full_page=True)
                b.close()


def test_the_simulator_powers_the_layouts_references_with_their_own_frames() -> None:
    import orjson

    from positioning.frames import tag_id_from_json
    from positioning.storesim import beacon_payload

    tags = [
        REF_A,
        "altbeacon:a1b2c3d4-0000-4000-8000-5347a7e00001:3:4",
        "eddystone:5368656c666761746521:00000000002a",
    ]
    for tag in tags:
        line = orjson.loads("{" + beacon_payload(tag) + "}")
        assert tag_id_from_json(line.get("mfg"), line.get("svc")) == tag
    with pytest.raises(ValueError, match="mac:"):
        beacon_payload("mac:AA:BB")
