"""`shelfgate calibrate`: fit the radio model from a calibration walk (trace + labels)."""

from __future__ import annotations

import argparse

from .common import open_out


def cmd_calibrate(a: argparse.Namespace) -> int:
    from gateway.calibration_files import fit_walk, write_calibration
    from gateway.layoutfile import load_layout

    from .progress import Progress, trace_span

    layout = load_layout(a.layout)
    span = trace_span(a.trace)
    bar = Progress("calibrate", span[1] - span[0] if span else None)
    t0 = span[0] if span else 0.0
    try:
        bar.stage("reading the walk")
        fitted = fit_walk(
            layout,
            a.trace,
            a.labels,
            tag=a.tag,
            tag_height=a.tag_height,
            progress=lambda t: bar.update(t - t0, "reading the walk"),
            fitting=lambda: bar.stage("fitting the radio model"),
        )
    finally:
        bar.close()
    res = fitted.result
    write_calibration(open_out(a.out), fitted.calibration_json(layout.store_id))
    print(res.report())
    print(f"wrote {a.out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
