"""Replay throughput against the straightforward reference, whole process, and peak memory.

    python -m benchmarks.throughput [--traces current dense flood] [--runs 3] [--trace T --layout L]

Without --trace it runs the three traces of `benchmarks/traces.py` (the issue's store with 60
shoppers and 400 unrelated devices; beacon-dense on the same store with no shelves declared; a
flood of random addresses and rotating beacon ids), then prints the zone classifier's cost per
decision at 500 m^2 and 5,000 m^2 of floor. Each side runs as its own process (start-up, imports, JSON
parsing included). Throughput is advertisements per second of wall time, the time a user waits;
shelfgate parses with one forked process per core (`--workers`), so its CPU time (user + sys,
children included) is reported too, and is the steadier figure on a shared machine. Peak RSS is
the sum over the process tree, sampled every 10 ms (pages shared after fork count once per
process, so this overstates).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import traces


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


def compare(trace: str, layout: str, runs: int, tmp: str) -> None:
    py = sys.executable
    # the trace was just written: without this the kernel writes it back to disk during the
    # first runs, which then measure the writeback as much as the replay (current 0.69 s
    # against 0.43 s once written)
    os.sync()
    with open(trace, "rb") as fh:
        lines = sum(1 for _ in fh)
    size = Path(trace).stat().st_size / 1e6
    print(f"trace: {lines:,} advertisements, {size:.0f} MB, layout {layout}")
    ours = [py, "-m", "gateway.cli", "replay", trace, "--layout", layout]
    ours += ["--events", f"{tmp}/ev.jsonl", "--raw-ids"]
    ref = [py, "-m", "benchmarks.reference_pipeline", trace, "--layout", layout]
    best: dict[str, tuple[float, float, int]] = {}
    sides = (("reference", ref), ("shelfgate", ours), ("1 process", [*ours, "--workers", "0"]))
    for name, cmd in sides:
        rs = [measure(cmd) for _ in range(runs)]
        best[name] = (min(r[0] for r in rs), min(r[1] for r in rs), max(r[2] for r in rs))
        w, c, rss = best[name]
        med = statistics.median(r[0] for r in rs)
        print(
            f"{name:10} wall {w:6.2f} s ({lines / w:>9,.0f} adv/s, median {med:5.2f} s)  "
            f"cpu {c:6.2f} s ({lines / c:>9,.0f} adv/s)  peak RSS {rss / 1024:5.0f} MB"
        )
    (rw, rc, _), (ow, oc, _), (sw, sc, _) = best["reference"], best["shelfgate"], best["1 process"]
    print(
        f"speed-up: {rw / ow:.1f}x wall, {rc / oc:.1f}x cpu; one process: {rw / sw:.1f}x wall, "
        f"{rc / sc:.1f}x cpu (best of {runs})",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", help="one trace of your own instead of the three below")
    ap.add_argument("--layout", default="config/layout-large.toml")
    ap.add_argument("--traces", nargs="*", default=["current", "dense", "flood"])
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    # an installed gateway runs from bytecode (pip compiles a wheel when it installs it, as it
    # compiled the reference's filterpy and numpy here); this checkout's editable install has
    # none, and with PYTHONDONTWRITEBYTECODE set every run would compile ~50 modules again
    # (~35 ms): compile them once, as an install would
    root = Path(__file__).resolve().parent.parent
    for pkg in ("gateway", "drivers", "positioning", "benchmarks"):
        compileall.compile_dir(root / pkg, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        if a.trace:
            compare(a.trace, a.layout, a.runs, tmp)
            return
        cur = f"{tmp}/current.jsonl"
        if {"current", "flood"} & set(a.traces):
            traces.simulate(a.layout, 60, 400, cur)
        for name in a.traces:
            print(f"== {name}: {traces.TITLES[name]}")
            if name == "current":
                compare(cur, a.layout, a.runs, tmp)
            elif name == "dense":
                bare = traces.without_shelves(a.layout, f"{tmp}/noshelves.toml")
                traces.simulate(bare, 300, 30, f"{tmp}/dense.jsonl")
                compare(f"{tmp}/dense.jsonl", bare, a.runs, tmp)
            elif name == "flood":
                traces.flood(cur, f"{tmp}/flood.jsonl")
                compare(f"{tmp}/flood.jsonl", a.layout, a.runs, tmp)
    print("== zone decision cost (ZoneClassifier, one shopper per 25 m^2, CPU time)")
    for area in (500.0, 2000.0, 5000.0):
        us, pts, rxs, mb = traces.decision_cost(area)
        print(
            f"{area:>6,.0f} m^2: {us:6.1f} us per decision ({pts:,} floor points, {rxs} receivers, "
            f"{mb:.0f} MB of candidate tables)"
        )


if __name__ == "__main__":
    main()
