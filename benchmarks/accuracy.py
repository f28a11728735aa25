"""Accuracy after calibration on simulated stores, against the nearest-receiver baseline.

For each layout and seed: a technician's calibration walk -> `calibrate`; a shopper trace ->
`replay` (calibrated model, and the nearest-receiver baseline) -> `evaluate`. Prints a table.

    python -m benchmarks.accuracy [--seeds 11 12 13] [--shoppers 20] [--duration 1200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path

from gateway.cli import main as cli

LAYOUTS = {
    "one receiver per zone": "config/layout.toml",
    "open hall": "config/layout-hall.toml",
    "one receiver per two zones": "config/layout-sparse.toml",
}


def run(args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = cli(args)
    if rc != 0:
        raise SystemExit(f"shelfgate {' '.join(args)} failed ({rc})")
    return out.getvalue()


def one(
    layout: str, seed: int, shoppers: int, duration: float, d: Path
) -> dict[str, dict[str, float]]:
    run(
        [
            "simulate",
            "--layout",
            layout,
            "--calibration-walk",
            "--seed",
            str(seed + 500),
            "--trace",
            f"{d}/cal.jsonl",
            "--truth",
            f"{d}/labels.jsonl",
        ]
    )
    run(
        [
            "calibrate",
            "--layout",
            layout,
            "--trace",
            f"{d}/cal.jsonl",
            "--labels",
            f"{d}/labels.jsonl",
            "--out",
            f"{d}/cal.json",
        ]
    )
    run(
        [
            "simulate",
            "--layout",
            layout,
            "--shoppers",
            str(shoppers),
            "--duration",
            str(duration),
            "--seed",
            str(seed),
            "--trace",
            f"{d}/trace.jsonl",
            "--truth",
            f"{d}/truth.jsonl",
        ]
    )
    res = {}
    for method in ("model", "nearest"):
        run(
            [
                "replay",
                f"{d}/trace.jsonl",
                "--layout",
                layout,
                "--calibration",
                f"{d}/cal.json",
                "--events",
                f"{d}/ev.jsonl",
                "--timeline",
                f"{d}/tl.jsonl",
                "--raw-ids",
                "--classifier",
                method,
            ]
        )
        res[method] = json.loads(
            run(
                [
                    "evaluate",
                    "--truth",
                    f"{d}/truth.jsonl",
                    "--events",
                    f"{d}/ev.jsonl",
                    "--timeline",
                    f"{d}/tl.jsonl",
                    "--json",
                ]
            )
        )
        res[method + "_nocollar"] = json.loads(
            run(
                [
                    "evaluate",
                    "--truth",
                    f"{d}/truth.jsonl",
                    "--events",
                    f"{d}/ev.jsonl",
                    "--timeline",
                    f"{d}/tl.jsonl",
                    "--collar",
                    "0",
                    "--json",
                ]
            )
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--shoppers", type=int, default=20)
    ap.add_argument("--duration", type=float, default=1200.0)
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    a = ap.parse_args()
    print(
        f"{'layout':28} {'seed':>4} | {'F1':>5} {'zone acc':>8} {'(no collar)':>11} | "
        f"{'baseline F1':>11} {'zone acc':>8} | {'start err':>9} {'end err':>7}"
    )
    for name in a.layouts:
        layout = LAYOUTS.get(name, name)
        rows = []
        for seed in a.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = one(layout, seed, a.shoppers, a.duration, Path(tmp))
            m, b, m0 = r["model"], r["nearest"], r["model_nocollar"]
            rows.append(
                (m["f1"], m["zone_accuracy"], b["f1"], b["zone_accuracy"], m0["zone_accuracy"])
            )
            print(
                f"{name:28} {seed:>4} | {m['f1']:5.3f} {m['zone_accuracy']:8.3f} {m0['zone_accuracy']:11.3f} | "
                f"{b['f1']:11.3f} {b['zone_accuracy']:8.3f} | {m['median_start_error_s'] or 0:8.1f}s "
                f"{m['median_end_error_s'] or 0:6.1f}s",
                flush=True,
            )
        mean = [statistics.mean(c) for c in zip(*rows, strict=True)]
        print(
            f"{name + ' (mean)':28} {'':>4} | {mean[0]:5.3f} {mean[1]:8.3f} {mean[4]:11.3f} | "
            f"{mean[2]:11.3f} {mean[3]:8.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
