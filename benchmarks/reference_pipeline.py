"""The straightforward implementation the throughput budget is measured against.

One filterpy KalmanFilter per (tag, receiver), predicted and updated on every advertisement;
stdlib json per line; frames parsed per advertisement; the zone is the zone under the receiver
with the strongest filtered RSSI; dwell by the same DwellDetector. This is what a first version
of the gateway would look like. Run: python -m benchmarks.reference_pipeline TRACE --layout L
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from filterpy.kalman import KalmanFilter

from gateway.layoutfile import load_layout
from positioning.dwell import DwellDetector
from positioning.frames import parse_altbeacon, parse_eddystone_uid, parse_ibeacon


def tag_of(obj: dict) -> str | None:
    for company, hexdata in (obj.get("mfg") or {}).items():
        data = bytes.fromhex(hexdata)
        tag = parse_ibeacon(data) if company == "76" else None
        tag = tag or parse_altbeacon(data)
        if tag:
            return tag
    for uuid, hexdata in (obj.get("svc") or {}).items():
        if uuid.startswith("0000feaa"):
            tag = parse_eddystone_uid(bytes.fromhex(hexdata))
            if tag:
                return tag
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--layout", required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    layout = load_layout(a.layout)
    rx_zone = {r.id: layout.zone_at(r.x, r.y) for r in layout.receivers}
    filters: dict[tuple[str, str], tuple[KalmanFilter, float]] = {}
    zone_of: dict[str, str | None] = {}
    dwell = DwellDetector()
    events = lines = 0
    with open(a.trace, encoding="utf-8") as fh:
        for line in fh:
            lines += 1
            obj = json.loads(line)
            tag = tag_of(obj)
            if tag is None:
                continue
            t, rx, rssi = obj["t"], obj["rx"], obj["rssi"]
            key = (tag, rx)
            kf_last = filters.get(key)
            if kf_last is None:
                kf = KalmanFilter(dim_x=1, dim_z=1)
                kf.x = np.array([[float(rssi)]])
                kf.P = np.array([[16.0]])
                kf.R = np.array([[16.0]])
                kf.H = np.array([[1.0]])
                last = t
            else:
                kf, last = kf_last
                kf.Q = np.array([[4.0 * max(t - last, 0.0)]])
                kf.predict()
                kf.update(float(rssi))
            filters[key] = (kf, t)
            best, best_rx = -1e9, None
            for r in layout.receivers:
                f = filters.get((tag, r.id))
                if f is not None and t - f[1] < 6.0 and f[0].x[0, 0] > best:
                    best, best_rx = f[0].x[0, 0], r.id
            zone = rx_zone[best_rx] if best_rx else None
            if zone_of.get(tag, "?") != zone:
                zone_of[tag] = zone
                events += len(dwell.update(tag, zone, t))
            events += len(dwell.tick(t)) if lines % 1000 == 0 else 0
    dt = time.perf_counter() - t0
    print(
        f"reference: {lines} lines in {dt:.2f} s = {lines / dt:,.0f} lines/s, {events} events",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
