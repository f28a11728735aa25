"""Constant-velocity Kalman filter for UWB positions (one per tag), x and y filtered separately.

State per axis: position and velocity; white-acceleration process noise `q` (m^2/s^3), so the
prediction over an irregular interval dt uses the exact discretisation; measurement noise grows
as the module's quality factor falls. A fix more than `gate` standard deviations off is ignored
(a multipath jump) unless `max_rejects` arrive in a row; after `reset_after_s` without fixes the
filter restarts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PositionParams:
    q: float = 0.5  # m^2/s^3: a shopper accelerates gently
    r: float = 0.01  # m^2 at quality 100 (DWM1001: ~10 cm)
    gate: float = 4.0
    max_rejects: int = 3
    reset_after_s: float = 5.0


class _Axis:
    __slots__ = ("p00", "p01", "p11", "v", "x")

    def __init__(self, x: float, r: float) -> None:
        self.x, self.v = x, 0.0
        self.p00, self.p01, self.p11 = r, 0.0, 1.0

    def predict(self, dt: float, q: float) -> None:
        self.x += self.v * dt
        p00, p01, p11 = self.p00, self.p01, self.p11
        self.p00 = p00 + 2 * dt * p01 + dt * dt * p11 + q * dt**3 / 3
        self.p01 = p01 + dt * p11 + q * dt * dt / 2
        self.p11 = p11 + q * dt

    def innovation(self, z: float, r: float) -> tuple[float, float]:
        return z - self.x, self.p00 + r

    def update(self, y: float, s: float) -> None:
        k0, k1 = self.p00 / s, self.p01 / s
        self.x += k0 * y
        self.v += k1 * y
        p00, p01, p11 = self.p00, self.p01, self.p11
        self.p00 = (1 - k0) * p00
        self.p01 = (1 - k0) * p01
        self.p11 = p11 - k1 * p01


class PositionFilter:
    __slots__ = ("_x", "_y", "rejects", "t")

    def __init__(self) -> None:
        self._x: _Axis | None = None
        self._y: _Axis | None = None
        self.t = 0.0
        self.rejects = 0

    def update(
        self, x: float, y: float, t: float, quality: int, prm: PositionParams
    ) -> tuple[float, float]:
        r = prm.r * 100.0 / max(quality, 5)
        if self._x is None or self._y is None or t - self.t > prm.reset_after_s:
            self._x, self._y, self.t, self.rejects = _Axis(x, r), _Axis(y, r), t, 0
            return x, y
        dt = max(t - self.t, 0.0)
        self.t = t
        self._x.predict(dt, prm.q)
        self._y.predict(dt, prm.q)
        yx, sx = self._x.innovation(x, r)
        yy, sy = self._y.innovation(y, r)
        if yx * yx / sx + yy * yy / sy > prm.gate**2:
            self.rejects += 1
            if self.rejects >= prm.max_rejects:
                self._x, self._y, self.rejects = _Axis(x, r), _Axis(y, r), 0
                return x, y
            return self._x.x, self._y.x
        self.rejects = 0
        self._x.update(yx, sx)
        self._y.update(yy, sy)
        return self._x.x, self._y.x
