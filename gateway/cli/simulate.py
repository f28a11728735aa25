"""`shelfgate simulate`: a simulated store's trace and ground truth (or a calibration walk and
its labels)."""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from positioning.errors import InputError

from .common import open_out


def cmd_simulate(a: argparse.Namespace) -> int:
    import numpy as np

    from drivers.trace.writer import write_segments, write_trace
    from gateway.layoutfile import load_layout
    from positioning.storesim import SimParams, StoreSimulation
    from positioning.walk import plan_walk

    layout = load_layout(a.layout)
    shoppers = (
        0
        if a.calibration_walk and a.shoppers is None
        else (20 if a.shoppers is None else a.shoppers)
    )
    devices = a.devices if a.devices is not None else (5 if a.calibration_walk else 2 * shoppers)
    params = SimParams(
        shoppers=shoppers,
        devices=devices,
        seed=a.seed,
        start_time=a.start,
        horizon_s=a.duration + 600,
    )
    try:
        sim = StoreSimulation(layout, params)
    except ValueError as e:
        raise InputError(a.layout, "", str(e)) from None
    labels: list[dict[str, object]] = []
    duration = a.duration
    if a.calibration_walk:
        rng = np.random.default_rng(a.seed + 1000)
        stands = plan_walk(layout, rng)
        tag, done = sim.add_technician(stands, 5.0, a.stand_s)
        duration = max(duration, done[-1][1] + 10.0)
        for s0, s1, x, y, zone in done:
            labels.append(
                {
                    "tag": tag,
                    "zone": zone,
                    "start": round(a.start + s0 + 2.0, 3),
                    "end": round(a.start + s1 - 2.0, 3),
                    "x": round(x, 3),
                    "y": round(y, 3),
                }
            )
    t0 = time.perf_counter()
    with open(open_out(a.trace), "w", encoding="utf-8") as fh:
        n = write_trace(sim, duration, fh)
    if a.truth:
        with open(open_out(a.truth), "wb") as fb:
            if a.calibration_walk:
                fb.write(b"".join(orjson.dumps(x) + b"\n" for x in labels))
            else:
                write_segments(sim.truth(0.0, duration), fb, offset=a.start)
    tags = sum(1 for p in sim.persons if p.tag is not None)
    print(
        f"simulated {duration:.0f} s of {layout.store_id}: {n} advertisements from {tags} tagged "
        f"shoppers and {devices} other devices at {len(layout.receivers)} receivers "
        f"-> {a.trace} ({time.perf_counter() - t0:.1f} s)",
        file=sys.stderr,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("simulate", help="simulate a store: advertisement trace + ground truth")
    s.add_argument("--layout", required=True)
    s.add_argument(
        "--shoppers", type=int, default=None, help="tagged shoppers in the store at a time (20)"
    )
    s.add_argument("--devices", type=int, default=None, help="unrelated advertisers (2 x shoppers)")
    s.add_argument("--duration", type=float, default=1800.0, help="seconds (1800)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--start", type=float, default=1767261600.0, help="unix time of the start")
    s.add_argument("--trace", required=True, help="output trace (JSON lines)")
    s.add_argument("--truth", help="output ground truth (or, with --calibration-walk, the labels)")
    s.add_argument(
        "--calibration-walk",
        action="store_true",
        help="a technician with a reference beacon stands in every zone and some aisles",
    )
    s.add_argument("--stand-s", type=float, default=30.0, help="seconds per calibration stand (30)")
    s.set_defaults(func=cmd_simulate)
