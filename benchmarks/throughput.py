"""Replay throughput against the straightforward reference, whole process, and peak memory.

    python -m benchmarks.throughput [--trace T --layout L] [--runs 3]

Without --trace it simulates the issue's store (20 receivers, 60 shoppers, 400 unrelated
devices, ~500k advertisements). Each side runs as its own process (start-up, imports, JSON
parsing included); CPU time (user + sys) is the steadier figure on a shared machine, wall time
is reported too. Peak RSS comes from the kernel's accounting of the child.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall s, cpu s, peak RSS KiB) of one child process."""
    pid_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - pid_start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace")
    ap.add_argument("--layout", default="config/layout-large.toml")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        trace = a.trace
        if trace is None:
            trace = f"{tmp}/bench.jsonl"
            subprocess.run(
                [
                    py,
                    "-m",
                    "gateway.cli",
                    "simulate",
                    "--layout",
                    a.layout,
                    "--shoppers",
                    "60",
                    "--devices",
                    "400",
                    "--duration",
                    "65",
                    "--seed",
                    "3",
                    "--trace",
                    trace,
                ],
                check=True,
                stderr=subprocess.DEVNULL,
            )
        with open(trace, "rb") as fh:
            lines = sum(1 for _ in fh)
        size = Path(trace).stat().st_size / 1e6
        print(f"trace: {lines:,} advertisements, {size:.0f} MB, layout {a.layout}")
        ours = [
            py,
            "-m",
            "gateway.cli",
            "replay",
            trace,
            "--layout",
            a.layout,
            "--events",
            f"{tmp}/ev.jsonl",
            "--raw-ids",
        ]
        ref = [py, "-m", "benchmarks.reference_pipeline", trace, "--layout", a.layout]
        best: dict[str, tuple[float, float, int]] = {}
        for name, cmd in (("reference", ref), ("shelfgate", ours)):
            runs = [measure(cmd) for _ in range(a.runs)]
            best[name] = (min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs))
            w, c, rss = best[name]
            print(
                f"{name:10} wall {w:6.2f} s ({lines / w:>9,.0f} adv/s)  cpu {c:6.2f} s "
                f"({lines / c:>9,.0f} adv/s)  peak RSS {rss / 1024:5.0f} MB"
            )
        (rw, rc, _), (ow, oc, _) = best["reference"], best["shelfgate"]
        print(f"speed-up: {rw / ow:.1f}x wall, {rc / oc:.1f}x cpu (best of {a.runs})")


if __name__ == "__main__":
    main()
