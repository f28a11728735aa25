"""Held-out accuracy: generated stores, two physics, a quick calibration walk, tune/report split.

    python -m benchmarks.heldout --split tune   [--physics heldout storesim] [--kinds ...]
    python -m benchmarks.heldout --split report [--shoppers 20] [--duration 900]

Per store and seed: a technician's quick walk (one ~40 s stand per zone, no aisle spots, labels
naming the zone only) -> `calibrate`; shoppers -> the same `ZoneTracker` `replay` runs (fed in
process, a second of sightings at a time, ticking as replay does) -> `evaluation.score`. The
nearest-receiver baseline runs on the same data beside every figure. Which stores and seeds are
tuning and which are reporting is fixed in `benchmarks/stores.py`; tuning never looks at report.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from positioning.calibration import calibrate
from positioning.evaluation import score
from positioning.layout import Layout
from positioning.pathloss import RadioModel
from positioning.storesim import SimParams, StoreSimulation
from positioning.tracker import TrackerParams, ZoneTracker
from positioning.types import ZoneSegment

from .physics import HeldOutStore, quick_walk
from .stores import (
    KINDS,
    REPORT_SIM_SEEDS,
    REPORT_STORE_SEEDS,
    TUNE_SIM_SEEDS,
    TUNE_STORE_SEEDS,
    make_store,
)

MIN_DWELL_S = 60.0
SimFactory = Callable[[SimParams], StoreSimulation]


@dataclass(frozen=True, slots=True)
class RunScore:
    f1: float
    acc: float  # no collar
    acc_collar: float  # 2 s collar
    base_f1: float
    base_acc: float
    cal_stand_share: float | None


def calibrate_quick(make: SimFactory, seed: int) -> RadioModel:
    sim = make(SimParams(shoppers=0, devices=5, seed=seed + 500))
    tag, stands = quick_walk(sim, np.random.default_rng(seed + 1000))
    pid = next(p.pid for p in sim.persons if p.tag == tag)
    ch = sim.chunk(0.0, stands[-1].end + 5.0)
    sel = ch.person == pid
    sightings = zip(ch.rx[sel].tolist(), ch.rssi[sel].tolist(), ch.t[sel].tolist(), strict=True)
    return calibrate(sim.layout, sightings, stands).model


def track(
    sim: StoreSimulation, trackers: list[ZoneTracker], duration: float, chunk_s: float = 30.0
) -> None:
    """Feed every tag sighting of [0, duration) to each tracker, a second at a time."""
    tags = [p.tag for p in sim.persons]
    t = 0.0
    while t < duration:
        ch = sim.chunk(t, min(t + chunk_s, duration))
        tags += [p.tag for p in sim.persons[len(tags) :]]
        is_tag = np.array([tags[i] is not None for i in ch.person.tolist()], dtype=bool)
        ct, crx, cp, cr = ch.t[is_tag], ch.rx[is_tag], ch.person[is_tag], ch.rssi[is_tag]
        edges = np.searchsorted(ct, np.arange(t + 1.0, t + chunk_s + 1.0))
        lo = 0
        for k, hi in enumerate(edges.tolist()):
            if hi > lo:
                batch_tags = [tags[i] or "" for i in cp[lo:hi].tolist()]
                for tr in trackers:
                    tr.observe_batch(batch_tags, crx[lo:hi], cr[lo:hi].astype(float), ct[lo:hi])
            for tr in trackers:
                tr.tick(t + k + 1.0)
            lo = hi
        t += chunk_s
    for tr in trackers:
        tr.finish(duration)


def run_one(
    make: SimFactory, layout: Layout, seed: int, shoppers: int, duration: float
) -> RunScore:
    model = calibrate_quick(make, seed)
    sim = make(
        SimParams(shoppers=shoppers, devices=2 * shoppers, seed=seed, horizon_s=duration + 600)
    )
    trackers = [
        ZoneTracker(layout, model, TrackerParams(), True, method) for method in ("model", "nearest")
    ]
    track(sim, trackers, duration)
    truth = sim.truth(0.0, duration)
    out = []
    for tr in trackers:
        dwells = [
            ZoneSegment(e.tag, e.zone, e.start, e.end) for e in tr.events if e.kind == "dwell"
        ]
        s0 = score(truth, dwells, MIN_DWELL_S, tr.segments, collar=0.0)
        s2 = score(truth, dwells, MIN_DWELL_S, tr.segments, collar=2.0)
        out.append((s0.f1, s0.zone_accuracy or 0.0, s2.zone_accuracy or 0.0))
    return RunScore(out[0][0], out[0][1], out[0][2], out[1][0], out[1][1], None)


def factory(
    physics: str, kind: str, store_seed: int, edit: Callable[[Layout], Layout] | None = None
) -> tuple[SimFactory, Layout]:
    """The simulation of a generated store in one physics; `edit` changes its layout (the
    simulation and the gateway both get the edited one)."""
    store = make_store(kind, store_seed)
    if edit is not None:
        store = dataclasses.replace(store, layout=edit(store.layout))
    if physics == "heldout":
        return (lambda p: HeldOutStore(store, p)), store.layout
    return (lambda p: StoreSimulation(store.layout, p)), store.layout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=("tune", "report"), required=True)
    ap.add_argument("--physics", nargs="+", default=["heldout", "storesim"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--shoppers", type=int, default=20)
    ap.add_argument("--duration", type=float, default=900.0)
    ap.add_argument("--stores", type=int, nargs="+", help="store seeds (default: the split's)")
    ap.add_argument("--seeds", type=int, nargs="+", help="simulation seeds (default: the split's)")
    a = ap.parse_args()
    stores = a.stores or (TUNE_STORE_SEEDS if a.split == "tune" else REPORT_STORE_SEEDS)
    seeds = a.seeds or (TUNE_SIM_SEEDS if a.split == "tune" else REPORT_SIM_SEEDS)
    print(
        f"{'physics':9} {'store':18} {'seed':>4} | {'F1':>5} {'acc':>5} {'acc 2s':>6} | "
        f"{'base F1':>7} {'base acc':>8}"
    )
    for physics in a.physics:
        for kind in a.kinds:
            rows = []
            for st, seed in zip(stores, seeds, strict=False):
                make, layout = factory(physics, kind, st)
                r = run_one(make, layout, seed, a.shoppers, a.duration)
                rows.append(r)
                print(
                    f"{physics:9} {layout.store_id:18} {seed:>4} | {r.f1:5.3f} {r.acc:5.3f} "
                    f"{r.acc_collar:6.3f} | {r.base_f1:7.3f} {r.base_acc:8.3f}",
                    flush=True,
                )
            m = [
                statistics.mean(getattr(r, f) for r in rows)
                for f in ("f1", "acc", "acc_collar", "base_f1", "base_acc")
            ]
            print(
                f"{physics:9} {kind + ' mean':18} {'':>4} | {m[0]:5.3f} {m[1]:5.3f} {m[2]:6.3f} | "
                f"{m[3]:7.3f} {m[4]:8.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
