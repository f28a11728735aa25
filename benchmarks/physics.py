"""A second store physics, one the classifier was not designed around (held-out evaluation).

On top of `positioning.storesim` (whose people and radio the classifier was shaped on), this
store has:

- goods that attenuate: every shelf block or display (GeneratedStore.goods, 1.8 m tall) costs
  4 dB per metre of the tag-receiver path that runs through it below its top (at most 12 dB
  a block, 20 dB in all), whether or not the layout declares the block;
- a wider spread of receiver gains (sd 4 dB), exponents (sd 0.25, mean 2.3), phones (sd 4 dB),
  stronger body loss by heading (up to 14 dB), shorter-range shadowing (sd 5 dB, 2 m);
- a third of the app phones advertising slowly (every 1-2 s, as iOS does in the background);
- shoppers in an open hall stand around a display, never on it.

`quick_walk` is the held-out calibration protocol: one ~40 s stand per zone, somewhere in the
inner part of the zone (labels carry the zone only, not the spot), no aisle spots.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from positioning.calibration import Stand
from positioning.layout import TAG_HEIGHT, FloatArray, points_in_polygon
from positioning.storesim import RadioParams, SimParams, StoreSimulation, _Person

from .stores import GeneratedStore

HELD_OUT_RADIO = RadioParams(
    ref_rssi=-62.0,
    exponent=2.3,
    exponent_sd=0.25,
    device_sd=4.0,
    receiver_gain_sd=4.0,
    shadow_sd=5.0,
    shadow_corr_m=2.0,
    body_loss_max=14.0,
)
GOODS_HEIGHT = 1.8
GOODS_DB_PER_M = 4.0
GOODS_CAP_DB = 12.0
GOODS_TOTAL_CAP_DB = 20.0
SLOW_SHARE = 1.0 / 3.0


class HeldOutStore(StoreSimulation):
    def __init__(self, store: GeneratedStore, params: SimParams) -> None:
        self.store = store
        self._goods = np.array(
            [
                [
                    min(p[0] for p in g),
                    min(p[1] for p in g),
                    max(p[0] for p in g),
                    max(p[1] for p in g),
                ]
                for g in store.goods
            ]
        ).reshape(-1, 4)
        super().__init__(store.layout, replace(params, radio=HELD_OUT_RADIO))

    def _add_shopper(self, arrive: float | None) -> None:
        super()._add_shopper(arrive)
        person = self.persons[-1]
        if person.kind == "app" and self.rng.random() < SLOW_SHARE:
            person.interval = float(self.rng.uniform(1.0, 2.0))
            person.phase = float(self.rng.uniform(0, person.interval))

    def _random_point_in_zone(self, zi: int) -> tuple[float, float]:
        for _ in range(30):
            x, y = super()._random_point_in_zone(zi)
            if not self._in_goods(x, y):
                return x, y
        return x, y

    def _in_goods(self, x: float, y: float) -> bool:
        g = self._goods
        return bool(((g[:, 0] <= x) & (x <= g[:, 2]) & (g[:, 1] <= y) & (y <= g[:, 3])).any())

    def _rssi(self, person: _Person, t: FloatArray, rng: np.random.Generator) -> FloatArray:
        level = super()._rssi(person, t, rng)
        if len(self._goods):
            x = np.interp(t, person.keys_t, person.keys_x)
            y = np.interp(t, person.keys_t, person.keys_y)
            level -= self._goods_loss(x, y)
        return level

    def _goods_loss(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """dB lost in goods on the path from each tag position to each receiver (n x rx)."""
        rx = self.rx_xyz
        dx = rx[None, :, 0] - x[:, None]
        dy = rx[None, :, 1] - y[:, None]
        dz = rx[None, :, 2] - TAG_HEIGHT
        length = np.sqrt(dx * dx + dy * dy + dz * dz)
        # the path is below the goods' top up to this share of its length
        below = np.where(
            dz > 0, np.clip((GOODS_HEIGHT - TAG_HEIGHT) / np.maximum(dz, 1e-9), 0, 1), 1.0
        )
        total = np.zeros_like(length)
        with np.errstate(divide="ignore", invalid="ignore"):
            for x0, y0, x1, y1 in self._goods:
                lo, hi = np.zeros_like(length), below.copy()
                for p, d, a, b in ((x[:, None], dx, x0, x1), (y[:, None], dy, y0, y1)):
                    s0, s1 = (a - p) / d, (b - p) / d
                    inside = (p >= a) & (p <= b)
                    par = d == 0
                    s_lo = np.where(par, np.where(inside, -math.inf, math.inf), np.minimum(s0, s1))
                    s_hi = np.where(par, np.where(inside, math.inf, -math.inf), np.maximum(s0, s1))
                    lo, hi = np.maximum(lo, s_lo), np.minimum(hi, s_hi)
                metres = np.clip(hi - lo, 0.0, None) * length
                total += np.minimum(GOODS_DB_PER_M * metres, GOODS_CAP_DB)
        out: FloatArray = np.minimum(total, GOODS_TOTAL_CAP_DB)
        return out


def quick_walk(
    sim: StoreSimulation, rng: np.random.Generator, stand_s: float = 40.0
) -> tuple[str, list[Stand]]:
    """One stand per zone, at a random spot of its inner part; labels name the zone only."""
    spots: list[tuple[float, float, str | None]] = []
    for zi, z in enumerate(sim.layout.zones):
        cx, cy = z.centroid
        pts = np.asarray(z.polygon, dtype=float)
        half = (pts.max(axis=0) - pts.min(axis=0)) / 2
        for _ in range(30):
            x, y = cx + rng.uniform(-0.5, 0.5) * half[0], cy + rng.uniform(-0.5, 0.5) * half[1]
            ok = points_in_polygon(np.array([x]), np.array([y]), z.polygon)[0]
            if ok and not (isinstance(sim, HeldOutStore) and sim._in_goods(x, y)):
                break
        else:
            x, y = sim._random_point_in_zone(zi)
        spots.append((float(x), float(y), z.id))
    tag, done = sim.add_technician(spots, 5.0, stand_s)
    return tag, [Stand(zone, s0 + 2.0, s1 - 2.0) for s0, s1, _, _, zone in done]
