"""The `shelfgate` command line. Forms relied on from outside are in DESIGN.md."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from positioning.errors import InputError, ShelfgateError
from positioning.layout import Layout

from . import __version__

if TYPE_CHECKING:
    import numpy as np

    from positioning.calibration import Stand

log = logging.getLogger("shelfgate")


def _open_out(path: str) -> Path:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    return p


# ---------------------------------------------------------------- simulate
def cmd_simulate(a: argparse.Namespace) -> int:
    import numpy as np

    from drivers.sim import write_segments, write_trace
    from positioning.storesim import SimParams, StoreSimulation

    from .layoutfile import load_layout

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
        stands: list[tuple[float, float, str | None]] = []
        for z in layout.zones:
            # three marked spots per zone: the middle and a quarter of its length from each end
            cx, cy = z.centroid
            pts = np.asarray(z.polygon, dtype=float)
            ext = pts.max(axis=0) - pts.min(axis=0)
            along = np.array([ext[0] / 4, 0.0]) if ext[0] >= ext[1] else np.array([0.0, ext[1] / 4])
            for sign in (-1.0, 0.0, 1.0):
                x, y = float(cx + sign * along[0]), float(cy + sign * along[1])
                stands.append((x, y, z.id) if z.contains(x, y) else (cx, cy, z.id))
        stands += aisle_spots(layout, max(4, len(layout.zones)), rng)
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
    with open(_open_out(a.trace), "w", encoding="utf-8") as fh:
        n = write_trace(sim, duration, fh)
    if a.truth:
        with open(_open_out(a.truth), "wb") as fb:
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


def aisle_spots(
    layout: Layout, n: int, rng: np.random.Generator
) -> list[tuple[float, float, str | None]]:
    """n calibration spots spread over the walkable floor outside every zone (farthest-point
    sampling on a 0.5 m grid, so the aisles are covered evenly)."""
    import numpy as np

    xmin, ymin, xmax, ymax = layout.bounds()
    gx, gy = np.meshgrid(
        np.arange(xmin + 0.5, xmax - 0.4, 0.5), np.arange(ymin + 0.5, ymax - 0.4, 0.5)
    )
    xs, ys = gx.ravel(), gy.ravel()
    free = (layout.zone_index_of_points(xs, ys) < 0) & ~layout.on_shelf(xs, ys)
    xs, ys = xs[free], ys[free]
    if len(xs) == 0:
        return []
    k = int(rng.integers(len(xs)))
    chosen = [k]
    dist = np.hypot(xs - xs[k], ys - ys[k])
    while len(chosen) < min(n, len(xs)):
        k = int(dist.argmax())
        chosen.append(k)
        dist = np.minimum(dist, np.hypot(xs - xs[k], ys - ys[k]))
    return [(float(xs[i]), float(ys[i]), None) for i in chosen]


# ---------------------------------------------------------------- replay
def cmd_replay(a: argparse.Namespace) -> int:
    from .config import load_config
    from .layoutfile import load_layout
    from .pipeline import build_identity, build_tracker, load_calibration, registered_tags
    from .replay import replay_trace

    cfg = load_config(a.config)
    layout = load_layout(a.layout)
    model = load_calibration(a.calibration) if a.calibration else None
    tracker = build_tracker(
        layout, cfg, model, a.min_dwell, record_segments=a.timeline is not None, method=a.classifier
    )
    ident = build_identity(cfg, layout, raw_ids=a.raw_ids)
    matcher = None
    if a.offers:
        from positioning.offers import OfferMatcher

        from .offerfile import load_catalogue

        matcher = OfferMatcher(load_catalogue(a.offers), layout.timezone)
    t0 = time.perf_counter()
    with open(_open_out(a.events), "wb") as ev:
        tl = open(_open_out(a.timeline), "wb") if a.timeline else None  # noqa: SIM115
        try:
            s = replay_trace(
                a.trace, tracker, ident, ev, tl, registered_tags(cfg), matcher, a.workers
            )
        finally:
            if tl is not None:
                tl.close()
    dt = time.perf_counter() - t0
    st = s.stats
    span = (st.last_t - st.first_t) if st.first_t is not None and st.last_t is not None else 0.0
    print(
        f"replayed {st.lines} lines ({st.sightings} tag sightings, {st.skipped_no_frame} without a "
        f"beacon frame, {st.bad_lines} malformed, {st.unknown_receiver} from receivers not in the "
        f"layout) covering {span:.0f} s in {dt:.2f} s ({st.lines / max(dt, 1e-9):,.0f} lines/s): "
        f"{s.dwells} dwells, {s.events} events -> {a.events}",
        file=sys.stderr,
    )
    if (
        st.lines
        and st.unknown_receiver == st.sightings + st.unknown_receiver
        and st.unknown_receiver
    ):
        raise InputError(a.trace, "rx", f"no receiver id matches the layout {a.layout}")
    return 0


# ---------------------------------------------------------------- calibrate
def cmd_calibrate(a: argparse.Namespace) -> int:
    import json

    from drivers.replay import TraceStats, read_sightings
    from positioning.calibration import calibrate

    from .layoutfile import load_layout

    layout = load_layout(a.layout)
    stands, tags = _read_labels(a.labels)
    tag = a.tag or (tags[0] if len(tags) == 1 else None)
    if tag is None:
        raise InputError(a.labels, "tag", f"labels name several tags {tags}; choose one with --tag")
    stats = TraceStats()
    sightings = [
        (i, rssi, t)
        for tg, i, rssi, t in read_sightings(a.trace, layout.receiver_index(), stats)
        if tg == tag
    ]
    if not sightings:
        raise InputError(
            a.trace, "", f"the reference beacon {tag} is never heard by a receiver of the layout"
        )
    try:
        res = calibrate(layout, sightings, stands, tag_height=a.tag_height)
    except ValueError as e:
        raise InputError(a.labels, "", str(e)) from None
    Path(_open_out(a.out)).write_text(
        json.dumps(res.to_json(layout.store_id), indent=2) + "\n", encoding="utf-8"
    )
    print(res.report())
    print(f"wrote {a.out}")
    return 0


def _read_labels(path: str) -> tuple[list[Stand], list[str]]:
    from positioning.calibration import Stand

    p = Path(path)
    if not p.exists():
        raise InputError(path, "", "labels file not found")
    stands: list[Stand] = []
    tags: list[str] = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = orjson.loads(line)
            start, end = float(o["start"]), float(o["end"])
            zone = o.get("zone")
            if zone is not None and not isinstance(zone, str):
                raise TypeError
            xyz = [None if o.get(k) is None else float(o[k]) for k in ("x", "y", "z")]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(
                path,
                f"line {n}",
                'expected {"tag", "zone" | null, "start", "end"} (x, y, z optional)',
            ) from None
        if end <= start:
            raise InputError(path, f"line {n}", "end must be after start")
        stands.append(Stand(zone, start, end, *xyz))
        tg = o.get("tag")
        if isinstance(tg, str) and tg not in tags:
            tags.append(tg)
    if not stands:
        raise InputError(path, "", "no labels in the file")
    return stands, tags


# ---------------------------------------------------------------- evaluate
def _read_segments(path: str, kind: str, types: set[str] | None = None) -> list[object]:
    from positioning.types import ZoneSegment

    p = Path(path)
    if not p.exists():
        raise InputError(path, "", f"{kind} file not found")
    out: list[ZoneSegment] = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = orjson.loads(line)
            if types is not None and o.get("type") not in types:
                continue
            out.append(
                ZoneSegment(str(o["tag"]), o.get("zone"), float(o["start"]), float(o["end"]))
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise InputError(
                path, f"line {n}", f"expected a {kind} object with tag, zone, start, end"
            ) from None
    return out  # type: ignore[return-value]


def cmd_evaluate(a: argparse.Namespace) -> int:
    from positioning.evaluation import score

    truth = _read_segments(a.truth, "truth")
    events = _read_segments(a.events, "event", {"dwell"})
    timeline = _read_segments(a.timeline, "timeline") if a.timeline else None
    tt = {s.tag for s in truth}  # type: ignore[attr-defined]
    if events and not tt & {s.tag for s in events}:  # type: ignore[attr-defined]
        print(
            "warning: no event tag appears in the truth: replay with --raw-ids to evaluate",
            file=sys.stderr,
        )
    sc = score(truth, events, a.min_dwell, timeline, collar=a.collar)  # type: ignore[arg-type]
    if a.json:
        print(orjson.dumps(sc.to_json()).decode())
        return 0
    print(
        f"dwells: {sc.true_dwells} true, {sc.predicted_dwells} predicted, {sc.matched} matched (IoU >= 0.5)"
    )
    print(f"precision {sc.precision:.3f}  recall {sc.recall:.3f}  F1 {sc.f1:.3f}")
    if sc.median_start_error_s is not None:
        print(
            f"median start error {sc.median_start_error_s:.1f} s, end error {sc.median_end_error_s:.1f} s"
        )
    if sc.zone_accuracy is not None:
        print(f"zone accuracy (time-weighted, {a.collar:g} s collar) {sc.zone_accuracy:.3f}")
    return 0


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="shelfgate", description="In-store BLE beacon gateway")
    ap.add_argument("--version", action="version", version=f"shelfgate {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

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

    r = sub.add_parser("replay", help="run a recorded trace through the pipeline")
    r.add_argument("trace")
    r.add_argument("--layout", required=True)
    r.add_argument("--calibration")
    r.add_argument("--config")
    r.add_argument("--events", required=True)
    r.add_argument("--timeline")
    r.add_argument("--min-dwell", type=float, default=None)
    r.add_argument("--raw-ids", action="store_true", help="keep raw tag ids (for evaluation)")
    r.add_argument("--offers", help="an offer catalogue (JSON): writes offer_triggered events too")
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes parsing the trace (default: one per core, at most 3; 1: no extra process)",
    )
    r.add_argument(
        "--classifier",
        choices=["model", "nearest"],
        default="model",
        help="zone decision: the calibrated model (default) or the nearest-receiver baseline",
    )
    r.set_defaults(func=cmd_replay)

    c = sub.add_parser("calibrate", help="fit the radio model from a calibration walk")
    c.add_argument("--layout", required=True)
    c.add_argument("--trace", required=True)
    c.add_argument("--labels", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--tag", help="the reference beacon's tag id (default: the one in the labels)")
    c.add_argument(
        "--tag-height",
        type=float,
        default=1.1,
        help="beacon height in metres when labels give no z",
    )
    c.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("evaluate", help="score events and timeline against ground truth")
    e.add_argument("--truth", required=True)
    e.add_argument("--events", required=True)
    e.add_argument("--timeline")
    e.add_argument("--min-dwell", type=float, default=60.0)
    e.add_argument(
        "--collar",
        type=float,
        default=2.0,
        help="seconds around each true zone change not scored for zone accuracy (2)",
    )
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    _extra_commands(sub)
    return ap


def _extra_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that live in their own modules (daemon, status, scan)."""
    for modname in ("gateway.cli_daemon", "gateway.check", "gateway.cli_scan", "gateway.cloud.cli"):
        try:
            mod = __import__(modname, fromlist=["register"])
        except ImportError:
            continue
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = (
            mod.register
        )
        register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rc: int = a.func(a)
        return rc
    except ShelfgateError as e:
        # user mistakes and radios that cannot work: one line, non-zero (systemd restarts `run`)
        print(f"shelfgate {a.cmd}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
