"""Receivers that drift after calibration, with and without the layout's reference beacons.

    python -m benchmarks.drift [--split report] [--physics heldout] [--kinds aisles sparse]

Per store: a beacon built into every receiver (`[[references]] receiver = ...`: the receivers
hear each other). The quick calibration walk records their levels; then, 5 minutes into 30
minutes of shoppers, three receivers change gain by 6-10 dB, up or down (a pallet in front of
one, a knocked one, a firmware update): what a restocked store does to a calibration. Three
trackers take the same sightings: the store as calibrated (no change; the ceiling), the changed
store without references, and the changed store with them (positioning.drift). Zone accuracy
from minute 10 on (after the change; no collar) and the drift each receiver was found to have.
Nothing in positioning.drift was tuned on these runs: its constants were set before the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import numpy as np

from positioning.calibration import calibrate
from positioning.drift import reference_levels
from positioning.evaluation import score
from positioning.layout import Layout, Reference
from positioning.pathloss import RadioModel
from positioning.storesim import SimParams
from positioning.tracker import TrackerParams, ZoneTracker

from .heldout import SimFactory, factory, track
from .physics import quick_walk
from .stores import KINDS, REPORT_SIM_SEEDS, REPORT_STORE_SEEDS, TUNE_SIM_SEEDS, TUNE_STORE_SEEDS

CHANGE_AT_S = 300.0
SCORE_FROM_S = 600.0
CHANGED = 3


def with_references(layout: Layout) -> Layout:
    refs = tuple(
        Reference(f"ibeacon:{CAL_UUID}:7:{i + 1}", r.x, r.y, r.z, r.id)
        for i, r in enumerate(layout.receivers)
    )
    return dataclasses.replace(layout, references=refs)


CAL_UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"


def calibrate_with_references(make: SimFactory, layout: Layout, seed: int) -> RadioModel:
    sim = make(SimParams(shoppers=0, devices=5, seed=seed + 500))
    tag, stands = quick_walk(sim, np.random.default_rng(seed + 1000))
    pid = next(p.pid for p in sim.persons if p.tag == tag)
    ch = sim.chunk(0.0, stands[-1].end + 5.0)
    sel = ch.person == pid
    model = calibrate(
        layout,
        zip(ch.rx[sel].tolist(), ch.rssi[sel].tolist(), ch.t[sel].tolist(), strict=True),
        stands,
    ).model
    refs = {r.tag for r in layout.references}
    tags = [p.tag for p in sim.persons]
    ref_rows = [
        (tags[p], i, float(v))
        for p, i, v in zip(ch.person.tolist(), ch.rx.tolist(), ch.rssi.tolist(), strict=True)
        if tags[p] in refs
    ]
    return dataclasses.replace(model, references=reference_levels(layout, ref_rows))


def run(
    make: SimFactory, layout: Layout, seed: int, duration: float
) -> tuple[float, float, float, list[tuple[str, float, float | None]]]:
    model = calibrate_with_references(make, layout, seed)
    rng = np.random.default_rng(seed + 77)
    changed = rng.choice(len(layout.receivers), CHANGED, replace=False).tolist()
    steps = [
        (int(i), CHANGE_AT_S, float(rng.choice([-1, 1]) * rng.uniform(6.0, 10.0))) for i in changed
    ]
    scores = []
    found: list[tuple[str, float, float | None]] = []
    for case in ("as calibrated", "changed, no references", "changed, references"):
        sim = make(SimParams(shoppers=20, devices=40, seed=seed, horizon_s=duration + 600))
        if case != "as calibrated":
            sim.gain_steps = steps
        tr = ZoneTracker(layout, model, TrackerParams(), True)
        assert tr.drift is not None
        tr.drift.compensate = case == "changed, references"
        track(sim, [tr], duration)
        refs = {r.tag for r in layout.references}
        truth = [
            s for s in sim.truth(SCORE_FROM_S, duration) if s.tag not in refs and s.end > s.start
        ]
        segs = [s for s in tr.segments if s.end > SCORE_FROM_S]
        s0 = score(truth, [], 60.0, segs, collar=0.0)
        scores.append(s0.zone_accuracy or 0.0)
        if case == "changed, references":
            rep = {d.receiver: d.shift_db for d in tr.drift.report()}
            found = [
                (layout.receivers[i].id, db, rep.get(layout.receivers[i].id)) for i, _, db in steps
            ]
    return scores[0], scores[1], scores[2], found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=("tune", "report"), default="report")
    ap.add_argument("--physics", nargs="+", default=["heldout"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--duration", type=float, default=1800.0)
    a = ap.parse_args()
    stores = TUNE_STORE_SEEDS if a.split == "tune" else REPORT_STORE_SEEDS
    seeds = TUNE_SIM_SEEDS if a.split == "tune" else REPORT_SIM_SEEDS
    print(f"{'physics':9} {'store':18} | {'as cal.':>7} {'changed':>7} {'+refs':>7} | found (true)")
    for physics in a.physics:
        for kind in a.kinds:
            rows = []
            for st, seed in zip(stores, seeds, strict=True):
                make, layout = factory(physics, kind, st, with_references)
                base, drifted, fixed, found = run(make, layout, seed, a.duration)
                rows.append((base, drifted, fixed))
                shown = ", ".join(
                    f"{rid} {'?' if got is None else f'{got:+.1f}'} ({true:+.1f})"
                    for rid, true, got in found
                )
                print(
                    f"{physics:9} {layout.store_id:18} | {base:7.3f} {drifted:7.3f} {fixed:7.3f} "
                    f"| {shown}",
                    flush=True,
                )
            m = [statistics.mean(r[k] for r in rows) for k in range(3)]
            print(f"{physics:9} {kind + ' mean':18} | {m[0]:7.3f} {m[1]:7.3f} {m[2]:7.3f} |")


if __name__ == "__main__":
    main()
