"""Generated store layouts for the held-out evaluation, and the tune / report split.

Each generated store has its own size, aisle count, zone sizes, receiver placement and mounting
heights (drawn from its name), and the goods it holds: shelf blocks that attenuate radio. Whether
the classifier's layout declares those blocks as floor nobody stands on depends on the kind:
aisle stores declare their shelf rows (a floor plan shows them), open halls do not declare their
display islands (they move with the season).

THE SPLIT (written down here and in the README; never look at REPORT figures while tuning):

- TUNE: the repository's own layouts (config/layout*.toml) with simulation seeds 1-3, and the
  generated stores named ``tune-*`` (store seeds 1-3) with simulation seeds 1-3.
- REPORT: the generated stores named ``report-*`` (store seeds 101-103) with simulation seeds
  11-13, and the real tracks spliced from shared/data/danis-static (tracks seeds 11-19).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from positioning.layout import Layout, Receiver, Zone

Polygon = tuple[tuple[float, float], ...]

TUNE_STORE_SEEDS = (1, 2, 3)
TUNE_SIM_SEEDS = (1, 2, 3)
REPORT_STORE_SEEDS = (101, 102, 103)
REPORT_SIM_SEEDS = (11, 12, 13)
KINDS = ("aisles", "hall", "sparse")


@dataclass(frozen=True, slots=True)
class GeneratedStore:
    layout: Layout  # what the gateway is given
    goods: tuple[Polygon, ...]  # what attenuates (declared in the layout or not)
    kind: str


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def store_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def make_store(kind: str, seed: int) -> GeneratedStore:
    """`kind`: "aisles" (one receiver per zone), "sparse" (aisles, one receiver per two zones)
    or "hall" (open floor, display islands not in the layout, receivers on a grid)."""
    if kind not in KINDS:
        raise ValueError(f"unknown store kind {kind!r}")
    split = "tune" if seed < 100 else "report"
    name = f"{split}-{kind}-{seed}"
    rng = np.random.default_rng(store_seed(name))
    if kind == "hall":
        return _hall(name, rng)
    return _aisles(name, rng, sparse=kind == "sparse")


def _heights(rng: np.random.Generator, n: int) -> tuple[float, ...]:
    # real installs: some receivers on the ceiling, some on shelf tops or walls
    return tuple(float(h) for h in rng.choice([2.2, 2.6, 3.0, 3.5, 4.0], n))


def _aisles(name: str, rng: np.random.Generator, sparse: bool) -> GeneratedStore:
    n_aisles = int(rng.integers(5, 8))
    aisle_w = float(rng.uniform(3.0, 4.5))
    shelf_w = float(rng.uniform(1.2, 2.0))
    per_aisle = int(rng.integers(2, 4))
    zone_len = float(rng.uniform(5.0, 8.0))
    cross = float(rng.uniform(2.0, 3.0))
    pitch = aisle_w + shelf_w
    width = shelf_w / 2 + n_aisles * pitch
    depth = cross + per_aisle * (zone_len + cross)
    zones: list[Zone] = []
    shelves: list[Polygon] = []
    centres: list[tuple[float, float]] = []
    for a in range(n_aisles):
        x0 = shelf_w / 2 + a * pitch
        for k in range(per_aisle):
            y0 = cross + k * (zone_len + cross)
            zones.append(
                Zone(f"z{a}{k}", f"aisle {a} part {k}", _rect(x0, y0, x0 + aisle_w, y0 + zone_len))
            )
            centres.append((x0 + aisle_w / 2, y0 + zone_len / 2))
            shelves.append(_rect(x0 + aisle_w, y0 - 0.5, x0 + pitch, y0 + zone_len + 0.5))
    for k in range(per_aisle):
        y0 = cross + k * (zone_len + cross)
        shelves.append(_rect(0.0, y0 - 0.5, shelf_w / 2, y0 + zone_len + 0.5))
    if sparse:
        # one receiver per two zones: every other zone of a checkerboard, between-zone spots
        centres = [c for i, c in enumerate(centres) if (i // per_aisle + i % per_aisle) % 2 == 0]
    heights = _heights(rng, len(centres))
    receivers = tuple(
        Receiver(
            f"rx{i:02d}", float(x + rng.uniform(-0.8, 0.8)), float(y + rng.uniform(-1.5, 1.5)), h
        )
        for i, ((x, y), h) in enumerate(zip(centres, heights, strict=True))
    )
    cross_y = tuple(cross / 2 + k * (zone_len + cross) for k in range(per_aisle + 1))
    layout = Layout(
        name, "Europe/Berlin", receivers, tuple(zones), width, depth, cross_y, tuple(shelves)
    )
    return GeneratedStore(layout, tuple(shelves), "sparse" if sparse else "aisles")


def _hall(name: str, rng: np.random.Generator) -> GeneratedStore:
    nx, ny = int(rng.integers(3, 5)), 3
    cell_w, cell_d = float(rng.uniform(7.0, 9.0)), float(rng.uniform(6.0, 7.5))
    width, depth = nx * cell_w + 2.0, ny * cell_d + 2.0
    zones: list[Zone] = []
    goods: list[Polygon] = []
    for i in range(nx):
        for j in range(ny):
            cx, cy = 1.0 + (i + 0.5) * cell_w, 1.0 + (j + 0.5) * cell_d
            zw, zd = cell_w * 0.6, cell_d * 0.6
            zones.append(
                Zone(
                    f"i{i}{j}",
                    f"island {i},{j}",
                    _rect(cx - zw / 2, cy - zd / 2, cx + zw / 2, cy + zd / 2),
                )
            )
            # the display itself: off-centre in its zone, shoppers stand around it
            ox, oy = rng.uniform(-0.5, 0.5, 2)
            goods.append(
                _rect(cx + ox - zw / 5, cy + oy - zd / 6, cx + ox + zw / 5, cy + oy + zd / 6)
            )
    n_rx = len(zones)
    gx, gy = int(np.ceil(np.sqrt(n_rx * width / depth))), 0
    gy = int(np.ceil(n_rx / gx))
    heights = _heights(rng, gx * gy)
    receivers = tuple(
        Receiver(f"rx{k:02d}", (a + 0.5) * width / gx, (b + 0.5) * depth / gy, heights[k])
        for k, (a, b) in enumerate((a, b) for b in range(gy) for a in range(gx))
    )
    layout = Layout(name, "Europe/Berlin", receivers, tuple(zones), width, depth)
    return GeneratedStore(layout, tuple(goods), "hall")
