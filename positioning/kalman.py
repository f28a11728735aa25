"""Time-aware scalar Kalman filter for RSSI, one per (tag, receiver).

Model: the RSSI level is a random walk. Between two advertisements `dt` seconds apart the
level's variance grows by `q * dt` (process noise scales with elapsed time, so irregular
advertising intervals are handled exactly); each advertisement measures the level with
variance `r`. This is filterpy's KalmanFilter with dim_x = dim_z = 1, F = H = 1, Q = q*dt,
R = r; tests check the estimates are identical.

Two additions a radio needs:
- outlier gating: a measurement whose innovation exceeds `gate` standard deviations of the
  innovation is not used (a reflection or a collision), unless `max_rejects` arrive in a row,
  which means the level really moved, and the filter restarts from the measurement;
- reset after a long gap: after `reset_after_s` without data the old level says nothing, and
  the filter restarts from the next measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .runs import run_starts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def occurrence_rank(keys: IntArray) -> IntArray:
    """For each element, how many earlier elements have the same key (0 for the first)."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    first = run_starts(sk)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))
    return rank


@dataclass(frozen=True, slots=True)
class KalmanParams:
    q: float = 4.0  # dB^2 per second: a walking shopper's level changes quickly
    r: float = 16.0  # dB^2, fast fading of one advertisement (~4 dB)
    p0: float = 16.0  # dB^2, variance right after (re)start
    gate: float = 3.5  # innovation gate in standard deviations
    max_rejects: int = 3
    reset_after_s: float = 15.0


class StreamBank:
    """Filter state of every (tag slot, receiver) stream, as flat numpy arrays.

    A batch of sightings is filtered in rounds: round k updates the k-th sighting of every stream
    in the batch at once, so the cost is a few array operations per round instead of Python code
    per advertisement. The arithmetic is the scalar filter's, operation for operation, so the
    estimates are identical to feeding the sightings one by one (tests check this).
    """

    def __init__(self, n_rx: int, slots: int = 64) -> None:
        self.n_rx = n_rx
        self.level = np.zeros(slots * n_rx)
        self.p = np.full(slots * n_rx, -1.0)  # < 0: no estimate yet
        self.t = np.full(slots * n_rx, -math.inf)
        self.rejects = np.zeros(slots * n_rx, dtype=np.int64)

    @property
    def slots(self) -> int:
        return len(self.level) // self.n_rx

    def grow(self, slots: int) -> None:
        """Make room for at least `slots` slots (capacity doubles)."""
        if slots <= self.slots:
            return
        n = max(slots, 2 * self.slots) * self.n_rx
        extra = n - len(self.level)
        self.level = np.concatenate([self.level, np.zeros(extra)])
        self.p = np.concatenate([self.p, np.full(extra, -1.0)])
        self.t = np.concatenate([self.t, np.full(extra, -math.inf)])
        self.rejects = np.concatenate([self.rejects, np.zeros(extra, dtype=np.int64)])

    def clear(self, slot: int) -> None:
        """Forget a slot's streams (its tag was dropped; the slot will be reused)."""
        a, b = slot * self.n_rx, (slot + 1) * self.n_rx
        self.p[a:b] = -1.0
        self.t[a:b] = -math.inf
        self.rejects[a:b] = 0

    def update(
        self, slot: IntArray, rx: IntArray, z: FloatArray, t: FloatArray, prm: KalmanParams
    ) -> FloatArray:
        """Feed a batch of measurements (in time order); returns the level after each one."""
        n = len(z)
        out = np.empty(n)
        if n == 0:
            return out
        sid = slot * self.n_rx + rx
        rank = occurrence_rank(sid)  # round k: the k-th sighting of each stream
        by_round = np.argsort(rank, kind="stable")
        bounds = np.cumsum(np.bincount(rank))
        gate2 = prm.gate * prm.gate
        lo = 0
        for hi in bounds.tolist():
            idx = by_round[lo:hi]
            lo = hi
            s = sid[idx]
            zi, ti = z[idx], t[idx]
            p = self.p[s]
            dt = ti - self.t[s]
            self.t[s] = ti
            restart = (p < 0.0) | (dt > prm.reset_after_s)
            p = np.where(dt > 0.0, p + prm.q * dt, p)
            x = self.level[s]
            y = zi - x
            sv = p + prm.r
            outlier = (y * y > gate2 * sv) & ~restart
            nrej = self.rejects[s] + 1
            hold = outlier & (nrej < prm.max_rejects)
            restart |= outlier & ~hold
            k = p / sv
            xn = np.where(restart, zi, np.where(hold, x, x + k * y))
            self.level[s] = xn
            self.p[s] = np.where(restart, prm.p0, np.where(hold, p, (1.0 - k) * p))
            self.rejects[s] = np.where(hold, nrej, 0)
            out[idx] = xn
        return out
