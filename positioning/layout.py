"""Store layout: receivers and shelf zones on the floor plan (metres)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_RECEIVER_HEIGHT = 2.5
TAG_HEIGHT = 1.1  # a phone in a hand or pocket, a tag on a cart


@dataclass(frozen=True, slots=True)
class Receiver:
    id: str
    x: float
    y: float
    z: float = DEFAULT_RECEIVER_HEIGHT


@dataclass(frozen=True, slots=True)
class Reference:
    """A beacon that never moves, at a known spot: on a pillar, or built into a receiver (ESP32
    receivers advertise too: receivers that hear each other). Never a shopper: its sightings go
    to drift monitoring (positioning.drift), never to zones or dwell."""

    tag: str
    x: float
    y: float
    z: float = TAG_HEIGHT
    receiver: str | None = None  # the receiver it is built into, if any


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str
    polygon: tuple[tuple[float, float], ...]

    def contains(self, x: float, y: float) -> bool:
        return bool(points_in_polygon(np.array([x]), np.array([y]), self.polygon)[0])

    @property
    def centroid(self) -> tuple[float, float]:
        """Area centroid of the polygon (falls back to the vertex mean for degenerate ones)."""
        pts = np.asarray(self.polygon, dtype=float)
        x, y = pts[:, 0], pts[:, 1]
        xn, yn = np.roll(x, -1), np.roll(y, -1)
        cross = x * yn - xn * y
        area = cross.sum() / 2.0
        if abs(area) < 1e-9:
            return float(x.mean()), float(y.mean())
        cx = ((x + xn) * cross).sum() / (6.0 * area)
        cy = ((y + yn) * cross).sum() / (6.0 * area)
        return float(cx), float(cy)

    @property
    def area(self) -> float:
        pts = np.asarray(self.polygon, dtype=float)
        x, y = pts[:, 0], pts[:, 1]
        return float(abs((x * np.roll(y, -1) - np.roll(x, -1) * y).sum()) / 2.0)


@dataclass(frozen=True, slots=True)
class Layout:
    store_id: str
    timezone: str
    receivers: tuple[Receiver, ...]
    zones: tuple[Zone, ...]
    width: float | None = None
    depth: float | None = None
    cross_aisles: tuple[float, ...] = ()  # y of cross aisles: where people change aisles
    shelves: tuple[tuple[tuple[float, float], ...], ...] = ()  # floor nobody stands on
    references: tuple[Reference, ...] = ()  # fixed beacons for drift (positioning.drift)

    def on_shelf(self, xs: FloatArray, ys: FloatArray) -> npt.NDArray[np.bool_]:
        out = np.zeros(xs.shape, dtype=bool)
        for poly in self.shelves:
            out |= points_in_polygon(xs, ys, poly)
        return out

    def route(self, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
        """Waypoints a person walks from (x0, y0) to (x1, y1), end included: along the aisle to a
        cross aisle, across, and along the target aisle (straight when no cross aisles are known
        or both points are in one aisle)."""
        if not self.cross_aisles or abs(x1 - x0) < 1.0:
            return [(x1, y1)]
        c = min(self.cross_aisles, key=lambda cy: abs(y0 - cy) + abs(y1 - cy))
        return [(x0, c), (x1, c), (x1, y1)]

    @property
    def receiver_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.receivers)

    def receiver_index(self) -> dict[str, int]:
        return {r.id: i for i, r in enumerate(self.receivers)}

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the floor: the declared size, else receivers and zones."""
        xs = [r.x for r in self.receivers] + [p[0] for z in self.zones for p in z.polygon]
        ys = [r.y for r in self.receivers] + [p[1] for z in self.zones for p in z.polygon]
        xmin, ymin = min(0.0, *xs), min(0.0, *ys)
        xmax = self.width if self.width is not None else max(xs)
        ymax = self.depth if self.depth is not None else max(ys)
        return xmin, ymin, max(xmax, max(xs)), max(ymax, max(ys))

    def zone_at(self, x: float, y: float) -> str | None:
        for z in self.zones:
            if z.contains(x, y):
                return z.id
        return None

    def zone_index_of_points(self, xs: FloatArray, ys: FloatArray) -> npt.NDArray[np.int64]:
        """Index into `zones` for each point, -1 where no zone contains it (first zone wins)."""
        out = np.full(xs.shape, -1, dtype=np.int64)
        for i, z in enumerate(self.zones):
            inside = points_in_polygon(xs, ys, z.polygon) & (out < 0)
            out[inside] = i
        return out


def points_in_polygon(
    xs: FloatArray, ys: FloatArray, polygon: tuple[tuple[float, float], ...]
) -> npt.NDArray[np.bool_]:
    """Even-odd rule, vectorised; points on the lower/left edges count as inside."""
    inside = np.zeros(xs.shape, dtype=bool)
    n = len(polygon)
    for k in range(n):
        x1, y1 = polygon[k]
        x2, y2 = polygon[(k + 1) % n]
        if y1 == y2:
            continue
        crosses = (ys >= min(y1, y2)) & (ys < max(y1, y2))
        xint = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < xint)
    return inside
