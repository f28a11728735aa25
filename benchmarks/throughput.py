"""Replay throughput against the straightforward reference, whole process, and peak memory.

    python -m benchmarks.throughput [--trace T --layout L] [--runs 3]

Without --trace it simulates the issue's store (20 receivers, 60 shoppers, 400 unrelated
devices, ~500k advertisements). Each side runs as its own process (start-up, imports, JSON
parsing included). Throughput is advertisements per second of wall time, the time a user waits;
shelfgate parses with one forked process per core (`--workers`), so its CPU time (user + sys,
children included) is reported too, and is the steadier figure on a shared machine. Peak RSS is
the sum over the process tree, sampled every 10 ms (pages shared after fork count once per
process, so this overstates).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree_rss_kib(pid: int) -> int:
    """Sum of RSS of a process and its descendants (counts pages shared after fork twice)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall s, cpu s of the process and its children, peak summed RSS KiB of the tree)."""
    pid_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - pid_start
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, ru.ru_utime + ru.ru_stime, max(peak[0], ru.ru_maxrss)


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
        sides = (("reference", ref), ("shelfgate", ours), ("1 process", [*ours, "--workers", "1"]))
        for name, cmd in sides:
            runs = [measure(cmd) for _ in range(a.runs)]
            best[name] = (min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs))
            w, c, rss = best[name]
            med = statistics.median(r[0] for r in runs)
            print(
                f"{name:10} wall {w:6.2f} s ({lines / w:>9,.0f} adv/s, median {med:5.2f} s)  "
                f"cpu {c:6.2f} s ({lines / c:>9,.0f} adv/s)  peak RSS {rss / 1024:5.0f} MB"
            )
        (rw, rc, _), (ow, oc, _), (sw, sc, _) = (
            best["reference"],
            best["shelfgate"],
            best["1 process"],
        )
        print(
            f"speed-up: {rw / ow:.1f}x wall, {rc / oc:.1f}x cpu; one process: {rw / sw:.1f}x wall, "
            f"{rc / sc:.1f}x cpu (best of {a.runs})"
        )


if __name__ == "__main__":
    main()
