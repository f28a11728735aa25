"""The throughput benchmark's traces and the per-decision cost of the zone classifier.

- current: the store of the issue (layout-large: 20 receivers, shelves declared), 60 shoppers and
  400 unrelated devices: three quarters of the lines carry no beacon frame;
- dense: the same store with no shelves declared (the classifier's floor grid covers it all) and
  300 shoppers with 30 other devices: ~9 in 10 lines are beacon frames;
- flood: `current` plus 200,000 lines from random addresses (a new one each line) and 200,000
  beacon lines whose ids rotate (50,000 distinct, each heard ~4 times then never again).
"""

from __future__ import annotations

import heapq
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from positioning.classifier import ZoneClassifier
from positioning.layout import Layout, Receiver, Zone
from positioning.pathloss import RadioModel, predicted_rssi
from positioning.stand import StandMemory

TITLES = {
    "current": "the issue's store, shelves declared, 3 in 4 lines without a beacon frame",
    "dense": "the same store, no shelves declared, ~9 in 10 lines beacon frames",
    "flood": "current + 200k random addresses + 50k rotating beacon ids",
}
FLOOD_ADDRESSES = 200_000
FLOOD_IDS = 50_000
FLOOD_ID_LINES = 200_000


def simulate(layout: str, shoppers: int, devices: int, out: str) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "gateway.cli", "simulate", "--layout", layout,
            "--shoppers", str(shoppers), "--devices", str(devices), "--duration", "65",
            "--seed", "3", "--trace", out,
        ],
        check=True,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def without_shelves(layout: str, out: str) -> str:
    text = Path(layout).read_text(encoding="utf-8")
    Path(out).write_text(re.sub(r"\[\[shelves\]\]\s*\npolygon = [^\n]*\n", "", text), "utf-8")
    return out


def _t(line: bytes) -> float:
    return float(line[6 : line.index(b",")])


def flood(base: str, out: str, seed: int = 5) -> None:
    """`base` with random-address and rotating-id lines merged in, in time order."""
    with open(base, "rb") as fh:
        lines = fh.readlines()
    t0, t1 = _t(lines[0]), _t(lines[-1])
    with open(out, "wb") as fo:
        fo.writelines(heapq.merge(lines, _flood_lines(t0, t1, seed), key=_t))


def _flood_lines(t0: float, t1: float, seed: int) -> Iterator[bytes]:
    rng = np.random.default_rng(seed)
    n = FLOOD_ADDRESSES + FLOOD_ID_LINES
    ts = np.sort(rng.uniform(t0, t1, n))
    kind = rng.permutation(np.r_[np.zeros(FLOOD_ADDRESSES), np.ones(FLOOD_ID_LINES)])
    rx = rng.integers(1, 21, n)
    rssi = rng.integers(-98, -55, n)
    addr = rng.integers(0, 2**48, n, dtype=np.uint64)
    ids_seen = 0
    for k in range(n):
        a = int(addr[k])
        mac = ":".join(f"{(a >> s) & 0xFF:02X}" for s in range(40, -8, -8))
        if kind[k]:
            # ids rotate: each id is used for a few consecutive flood lines, then never again
            minor = (ids_seen * FLOOD_IDS // FLOOD_ID_LINES) % 65536
            major = (ids_seen * FLOOD_IDS // FLOOD_ID_LINES) // 65536 + 7
            ids_seen += 1
            payload = f"0215f7826da64fa24e988024bc5b71e0893e{major:04x}{minor:04x}c5"
        else:
            payload = "1005" + bytes(rng.integers(0, 256, 6, dtype=np.uint8).tobytes()).hex()
        yield (
            f'{{"t": {ts[k]:.3f}, "rx": "rx{int(rx[k]):02d}", "addr": "{mac}", '
            f'"rssi": {int(rssi[k])}, "mfg": {{"76": "{payload}"}}}}\n'
        ).encode()


def hall(area_m2: float, spacing: float = 7.0) -> Layout:
    """An open floor of `area_m2` (3:2), a receiver every `spacing` m, a 4 x 3 m zone around each."""
    w = (area_m2 * 1.5) ** 0.5
    d = area_m2 / w
    rxs, zones = [], []
    for i, x in enumerate(np.arange(spacing / 2, w, spacing)):
        for j, y in enumerate(np.arange(spacing / 2, d, spacing)):
            rxs.append(Receiver(f"rx{i}_{j}", float(x), float(y), 3.0))
            zones.append(
                Zone(
                    f"z{i}_{j}",
                    "",
                    ((x - 2, y - 1.5), (x + 2, y - 1.5), (x + 2, y + 1.5), (x - 2, y + 1.5)),
                )
            )
    return Layout("hall", "UTC", tuple(rxs), tuple(zones), float(w), float(d))


def decision_cost(
    area_m2: float, seconds: int = 20, seed: int = 1
) -> tuple[float, int, int, float]:
    """(us per decision, floor points, receivers, MB of tables) of ZoneClassifier on `hall(area_m2)`, with the
    store as busy per m^2 whatever its size (one shopper per 25 m^2, one decision per shopper per
    second, a second's decisions in one batch as the tracker makes them)."""
    layout = hall(area_m2)
    model = RadioModel()
    clf = ZoneClassifier(layout, model)
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = layout.bounds()
    per_s = max(1, round(area_m2 / 25.0))
    n = per_s * seconds
    xs, ys = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    lv = predicted_rssi(model, layout, xs, ys) + rng.normal(0, 4, (n, len(layout.receivers)))
    heard = lv > -92.0
    # as the tracker calls it: each shopper's offset prior and its stand memory (every
    # decision at a new random spot, so the memory moves between areas as often as it can)
    memory, slots = StandMemory(), np.arange(per_s)
    mean, prec = np.zeros(per_s), np.full(per_s, clf.shrink)

    def second(k: int) -> None:
        at = np.full(per_s, float(k // per_s))
        sl = slice(k, k + per_s)
        clf.log_likelihood_offsets(heard[sl], lv[sl], mean, prec, (memory, slots, at))

    second(0)  # warm
    t = time.process_time()
    for k in range(0, n, per_s):
        second(k)
    us = (time.process_time() - t) / n * 1e6
    return us, len(clf.xs), len(layout.receivers), clf.nbytes / 1e6
