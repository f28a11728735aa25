"""Walked tracks built from real recordings (shared/data/danis-static), scored like the stores.

    python -m benchmarks.realtracks [--seeds 11 12 ... 19]

The dataset has one beacon recorded for 120 s at each of 45 points of a 9 x 5 grid (12 real
receivers; SOURCE.md). Ten zones are drawn around the points of rows 2 and 4, columns 1, 3, 5,
7, 9 (2.4 x 3.6 m rectangles); the other points are aisle. Per point the first 40 s are the
calibration walk (one stand per zone, labels naming the zone only, as the held-out protocol);
the remaining 80 s are spliced into tracks: a walker goes from zone to zone along the grid
(~1 m/s: ~3 s of a point's real advertisements per grid step), stands 25-70 s in each, five
stays per track. RSSI values, receivers and reception gaps are real; only the splicing is made.
Tracks seeds 1-3 are TUNE, 11-19 REPORT (benchmarks/stores.py).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson

from positioning.calibration import Stand, calibrate
from positioning.dwell import DwellParams
from positioning.evaluation import score
from positioning.frames import tag_id_from_json
from positioning.layout import Layout, Zone
from positioning.pathloss import RadioModel
from positioning.tracker import TrackerParams, ZoneTracker
from positioning.types import ZoneSegment

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "danis-static"
CAL_S = 40.0
ZONE_ROWS = (1, 3)
ZONE_COLS = (0, 2, 4, 6, 8)
MIN_DWELL_S = 20.0

Recording = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # point -> (t - start, rx, rssi)


def load(
    data: Path = DATA,
) -> tuple[Layout, dict[str, tuple[float, float, float]], Recording, dict[tuple[int, int], str]]:
    from gateway.layoutfile import load_layout

    base = load_layout(data / "layout.toml")
    pts: dict[str, tuple[float, float, float]] = {}
    with open(data / "points.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        pts[r["point"]] = (float(r["x"]), float(r["y"]), float(r["start"]))
    xs = _clusters(sorted(p[0] for p in pts.values()))
    ys = _clusters(sorted(p[1] for p in pts.values()))
    grid = {(xs.index(_near(xs, x)), ys.index(_near(ys, y))): k for k, (x, y, _) in pts.items()}
    zones = []
    for j in ZONE_ROWS:
        for i in ZONE_COLS:
            x, y, _ = pts[grid[(i, j)]]
            zones.append(
                Zone(
                    f"z{i}{j}",
                    f"zone {i},{j}",
                    (
                        (x - 1.2, y - 1.8),
                        (x + 1.2, y - 1.8),
                        (x + 1.2, y + 1.8),
                        (x - 1.2, y + 1.8),
                    ),
                )
            )
    layout = replace(base, zones=tuple(zones))
    rx_index = layout.receiver_index()
    raw: dict[str, list[tuple[float, int, float]]] = {k: [] for k in pts}
    starts = sorted((p[2], k) for k, p in pts.items())
    begins = [s for s, _ in starts]
    with gzip.open(data / "points.jsonl.gz", "rb") as fh:
        for line in fh:
            o = orjson.loads(line)
            if tag_id_from_json(o.get("mfg"), o.get("svc")) is None or o["rx"] not in rx_index:
                continue
            k = int(np.searchsorted(begins, o["t"], side="right")) - 1
            if k >= 0 and o["t"] - begins[k] < 120.0:
                raw[starts[k][1]].append((o["t"] - begins[k], rx_index[o["rx"]], float(o["rssi"])))
    rec = {k: tuple(np.array(c) for c in zip(*sorted(v), strict=True)) for k, v in raw.items() if v}
    return layout, {k: (p[0], p[1], 1.85) for k, p in pts.items()}, rec, grid  # type: ignore[return-value]


def _clusters(v: list[float], gap: float = 1.0) -> list[float]:
    out: list[list[float]] = []
    for x in v:
        if out and x - out[-1][-1] < gap:
            out[-1].append(x)
        else:
            out.append([x])
    return [float(np.mean(c)) for c in out]


def _near(c: list[float], x: float) -> float:
    return min(c, key=lambda v: abs(v - x))


def calibrate_quick(layout: Layout, grid: dict[tuple[int, int], str], rec: Recording) -> RadioModel:
    sightings, stands, t0 = [], [], 0.0
    for j in ZONE_ROWS:
        for i in ZONE_COLS:
            t, rx, rssi = rec[grid[(i, j)]]
            sel = t < CAL_S
            sightings += list(
                zip(rx[sel].tolist(), rssi[sel].tolist(), (t[sel] + t0).tolist(), strict=True)
            )
            stands.append(Stand(f"z{i}{j}", t0 + 1.0, t0 + CAL_S - 1.0, z=1.85))
            t0 += CAL_S + 10.0
    return calibrate(layout, sightings, stands, tag_height=1.85).model


def make_track(
    seed: int, layout: Layout, grid: dict[tuple[int, int], str], rec: Recording, tag: str
) -> tuple[list[tuple[float, int, float]], list[ZoneSegment]]:
    rng = np.random.default_rng(seed)
    zone_of = {(i, j): f"z{i}{j}" for j in ZONE_ROWS for i in ZONE_COLS}
    cells = list(grid)
    here = cells[int(rng.integers(len(cells)))]
    t = 0.0
    out: list[tuple[float, int, float]] = []
    truth: list[ZoneSegment] = []
    targets = list(zone_of)
    for _ in range(5):
        goal = targets[int(rng.choice([k for k in range(len(targets)) if targets[k] != here]))]
        for cell in _path(here, goal, rng):
            t = _emit(
                rec[grid[cell]],
                float(rng.uniform(2.5, 3.5)),
                t,
                rng,
                out,
                truth,
                tag,
                zone_of.get(cell),
            )
        t = _emit(
            rec[grid[goal]], float(rng.uniform(25.0, 70.0)), t, rng, out, truth, tag, zone_of[goal]
        )
        here = goal
    out.sort(key=lambda s: s[0])
    merged: list[ZoneSegment] = []
    for s in truth:
        if merged and merged[-1].zone == s.zone:
            merged[-1] = replace(merged[-1], end=s.end)
        else:
            merged.append(s)
    return out, merged


def _path(
    a: tuple[int, int], b: tuple[int, int], rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Grid cells walked from a to b (a excluded, b excluded), x first or y first."""
    cells = []
    x, y = a
    first_x = bool(rng.integers(2))
    for axis in ("x", "y") if first_x else ("y", "x"):
        while (x if axis == "x" else y) != (b[0] if axis == "x" else b[1]):
            if axis == "x":
                x += 1 if b[0] > x else -1
            else:
                y += 1 if b[1] > y else -1
            cells.append((x, y))
    return cells[:-1]


def _emit(
    r: tuple[np.ndarray, np.ndarray, np.ndarray],
    dur: float,
    t: float,
    rng: np.random.Generator,
    out: list[tuple[float, int, float]],
    truth: list[ZoneSegment],
    tag: str,
    zone: str | None,
) -> float:
    """`dur` seconds of a point's real advertisements (from the part not used to calibrate)."""
    ts, rx, rssi = r
    off = float(rng.uniform(CAL_S, max(CAL_S, 120.0 - dur)))
    sel = (ts >= off) & (ts < off + dur)
    out += list(
        zip((ts[sel] - off + t).tolist(), rx[sel].tolist(), rssi[sel].tolist(), strict=True)
    )
    truth.append(ZoneSegment(tag, zone, t, t + dur))
    return t + dur


def run(seeds: list[int]) -> None:
    layout, _, rec, grid = load()
    model = calibrate_quick(layout, grid, rec)
    tag = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:2:1"
    print(f"{'track':>5} | {'acc':>5} {'F1':>5} | {'base acc':>8} {'base F1':>7}")
    rows = []
    for seed in seeds:
        sightings, truth = make_track(seed, layout, grid, rec, tag)
        res = []
        for method in ("model", "nearest"):
            params = TrackerParams(dwell=DwellParams(min_dwell_s=MIN_DWELL_S))
            tr = ZoneTracker(layout, model, params, True, method)
            _feed(tr, sightings, tag)
            dw = [
                ZoneSegment(e.tag, e.zone, e.start, e.end) for e in tr.events if e.kind == "dwell"
            ]
            s = score(truth, dw, MIN_DWELL_S, tr.segments)
            res.append((s.zone_accuracy or 0.0, s.f1))
        rows.append(res)
        print(
            f"{seed:>5} | {res[0][0]:5.3f} {res[0][1]:5.3f} | {res[1][0]:8.3f} {res[1][1]:7.3f}",
            flush=True,
        )
    m = [statistics.mean(r[k][i] for r in rows) for k in (0, 1) for i in (0, 1)]
    print(f"{'mean':>5} | {m[0]:5.3f} {m[1]:5.3f} | {m[2]:8.3f} {m[3]:7.3f}")


def _feed(tr: ZoneTracker, sightings: list[tuple[float, int, float]], tag: str) -> None:
    t = np.array([s[0] for s in sightings])
    rx = np.array([s[1] for s in sightings], dtype=np.int64)
    rssi = np.array([s[2] for s in sightings])
    edges = np.searchsorted(t, np.arange(1.0, t[-1] + 2.0))
    lo = 0
    for k, hi in enumerate(edges.tolist()):
        if hi > lo:
            tr.observe_batch([tag] * (hi - lo), rx[lo:hi], rssi[lo:hi], t[lo:hi])
        tr.tick(k + 1.0)
        lo = hi
    tr.finish(float(t[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(11, 20)))
    run(ap.parse_args().seeds)


if __name__ == "__main__":
    main()
