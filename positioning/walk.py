"""Planning a technician's calibration walk: where to stand, zone by zone and in the aisles."""

from __future__ import annotations

import numpy as np

from .layout import Layout

Spot = tuple[float, float, str | None]  # (x, y, zone id or None for an aisle)


def zone_spots(layout: Layout) -> list[Spot]:
    """Three marked spots per zone: the middle and a quarter of its length from each end (the
    middle again where a quarter point falls outside an irregular zone)."""
    out: list[Spot] = []
    for z in layout.zones:
        cx, cy = z.centroid
        pts = np.asarray(z.polygon, dtype=float)
        ext = pts.max(axis=0) - pts.min(axis=0)
        along = np.array([ext[0] / 4, 0.0]) if ext[0] >= ext[1] else np.array([0.0, ext[1] / 4])
        for sign in (-1.0, 0.0, 1.0):
            x, y = float(cx + sign * along[0]), float(cy + sign * along[1])
            out.append((x, y, z.id) if z.contains(x, y) else (cx, cy, z.id))
    return out


def aisle_spots(layout: Layout, n: int, rng: np.random.Generator) -> list[Spot]:
    """n spots spread over the walkable floor outside every zone (farthest-point sampling on a
    0.5 m grid, so the aisles are covered evenly)."""
    xmin, ymin, xmax, ymax = layout.bounds()
    gx, gy = np.meshgrid(
        np.arange(xmin + 0.5, xmax - 0.4, 0.5), np.arange(ymin + 0.5, ymax - 0.4, 0.5)
    )
    xs, ys = gx.ravel(), gy.ravel()
    free = (layout.zone_index_of_points(xs, ys) < 0) & ~layout.on_shelf(xs, ys)
    xs, ys = xs[free], ys[free]
    if len(xs) == 0:
        return []
    k = int(rng.integers(len(xs)))
    chosen = [k]
    dist = np.hypot(xs - xs[k], ys - ys[k])
    while len(chosen) < min(n, len(xs)):
        k = int(dist.argmax())
        chosen.append(k)
        dist = np.minimum(dist, np.hypot(xs - xs[k], ys - ys[k]))
    return [(float(xs[i]), float(ys[i]), None) for i in chosen]


def plan_walk(layout: Layout, rng: np.random.Generator) -> list[Spot]:
    """Every zone's spots, then as many aisle spots as zones (at least four)."""
    return zone_spots(layout) + aisle_spots(layout, max(4, len(layout.zones)), rng)
