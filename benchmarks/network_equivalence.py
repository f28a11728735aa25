"""Networked receivers against replay, as figures: the same simulated store replayed from its
file and published over a real mosquitto by 12 Theengs nodes at 10 x into `shelfgate run`, for
several seeds (the test uses one), with nodes that send their own time (`ts`, clock=receiver)
and nodes stamped on arrival (the firmware as it is).

    python -m benchmarks.network_equivalence [--seeds 6 7 8]

Per seed and mode: dwells replayed, dwells over MQTT, matched one to one (same tag and zone),
how many within 2 s at start and end, and the median and largest deviation.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

import orjson

from tests.conftest import ROOT, shelfgate
from tests.mqtt_helpers import Broker
from tests.test_network_equivalence import (
    LAYOUT,
    MAX_LAG_S,
    TOLERANCE_S,
    dwells,
    matched,
    networked,
    replayed,
    write_config,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[6, 7, 8])
    ap.add_argument("--duration", type=float, default=400.0)
    a = ap.parse_args()
    print(f"{'seed':>4} {'nodes':<16} {'replay':>6} {'mqtt':>5} {'matched':>7} "
          f"{'<= 2 s':>6} {'median':>8} {'largest':>8} {'nodes behind':>12}")  # fmt: skip
    for seed in a.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            broker = Broker(d).start()
            try:
                trace = d / "trace.jsonl"
                subprocess.run(
                    shelfgate("simulate", "--layout", str(LAYOUT), "--shoppers", "8",
                              "--devices", "4", "--duration", f"{a.duration:g}", "--seed",
                              str(seed), "--trace", str(trace), "--truth", str(d / "truth.jsonl")),
                    check=True, cwd=ROOT, capture_output=True,
                )  # fmt: skip
                t0 = orjson.loads(trace.read_bytes().split(b"\n", 1)[0])["t"]
                expected = dwells(replayed(d, trace, write_config(d, broker.port)), t0)
                for stamped in (True, False):
                    run = d / ("stamped" if stamped else "arrival")
                    run.mkdir()
                    got, pub = networked(run, broker, trace, stamped, len(expected))
                    dev = matched(expected, got)
                    offs = sorted(abs(x) for pair in dev.values() for x in pair) or [0.0]
                    close = sum(1 for s, e in dev.values() if max(abs(s), abs(e)) <= TOLERANCE_S)
                    lag = pub.max_lag_s * 1000
                    print(
                        f"{seed:>4} {'own clock (ts)' if stamped else 'arrival time':<16} "
                        f"{len(expected):>6} {len(got):>5} {len(dev):>7} {close:>6} "
                        f"{statistics.median(offs):>7.3f}s {offs[-1]:>7.2f}s "
                        f"{lag:>9.0f} ms{' (!)' if pub.max_lag_s > MAX_LAG_S else ''}",
                        flush=True,
                    )
            finally:
                broker.stop()


if __name__ == "__main__":
    main()
