"""`shelfgate evaluate`: score events and a timeline against ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from positioning.errors import InputError


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
