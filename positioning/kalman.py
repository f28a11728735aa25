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


@dataclass(frozen=True, slots=True)
class KalmanParams:
    q: float = 4.0  # dB^2 per second: a walking shopper's level changes quickly
    r: float = 16.0  # dB^2, fast fading of one advertisement (~4 dB)
    p0: float = 16.0  # dB^2, variance right after (re)start
    gate: float = 3.5  # innovation gate in standard deviations
    max_rejects: int = 3
    reset_after_s: float = 15.0


class RssiStreams:
    """Filter state of one tag's streams, one slot per receiver (plain lists: this is the hot path)."""

    __slots__ = ("level", "p", "rejects", "t")

    def __init__(self, n: int) -> None:
        self.level = [0.0] * n
        self.p = [-1.0] * n  # < 0: no estimate yet
        self.t = [-math.inf] * n
        self.rejects = [0] * n

    def update(self, i: int, z: float, t: float, prm: KalmanParams) -> float:
        """Feed one measurement `z` (dBm) at time `t` into slot `i`; returns the new level."""
        p = self.p[i]
        dt = t - self.t[i]
        self.t[i] = t
        if p < 0.0 or dt > prm.reset_after_s:
            self.level[i] = z
            self.p[i] = prm.p0
            self.rejects[i] = 0
            return z
        if dt > 0.0:
            p += prm.q * dt
        x = self.level[i]
        y = z - x
        s = p + prm.r
        if y * y > prm.gate * prm.gate * s:
            n = self.rejects[i] + 1
            if n < prm.max_rejects:
                self.rejects[i] = n
                self.p[i] = p
                return x
            self.level[i] = z
            self.p[i] = prm.p0
            self.rejects[i] = 0
            return z
        k = p / s
        x += k * y
        self.level[i] = x
        self.p[i] = (1.0 - k) * p
        self.rejects[i] = 0
        return x
