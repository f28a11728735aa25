"""`shelfgate evaluate`: score events and a timeline against ground truth."""

from __future__ import annotations

import argparse
import sys

import orjson


def cmd_evaluate(a: argparse.Namespace) -> int:
    from gateway.segments_file import read_segments
    from positioning.evaluation import score

    truth = read_segments(a.truth, "truth")
    events = read_segments(a.events, "event", {"dwell"})
    timeline = read_segments(a.timeline, "timeline") if a.timeline else None
    tt = {s.tag for s in truth}
    if events and not tt & {s.tag for s in events}:
        print(
            "warning: no event tag appears in the truth: replay with --raw-ids to evaluate",
            file=sys.stderr,
        )
    sc = score(truth, events, a.min_dwell, timeline, collar=a.collar)
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
