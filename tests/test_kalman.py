"""The production RSSI filter gives filterpy's KalmanFilter estimates on the same sequences."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter
from hypothesis import given, settings
from hypothesis import strategies as st

from positioning.kalman import KalmanParams, RssiStreams


def filterpy_reference(samples: list[tuple[float, float]], prm: KalmanParams) -> list[float]:
    """The same model and gating, written with filterpy."""
    out: list[float] = []
    kf: KalmanFilter | None = None
    last_t = 0.0
    rejects = 0
    for t, z in samples:
        if kf is None or t - last_t > prm.reset_after_s:
            kf = KalmanFilter(dim_x=1, dim_z=1)
            kf.x = np.array([[z]])
            kf.P = np.array([[prm.p0]])
            kf.R = np.array([[prm.r]])
            kf.H = np.array([[1.0]])
            last_t, rejects = t, 0
            out.append(z)
            continue
        kf.Q = np.array([[prm.q * max(t - last_t, 0.0)]])
        last_t = t
        kf.predict()
        y = z - kf.x[0, 0]
        s = kf.P[0, 0] + prm.r
        if y * y > prm.gate**2 * s:
            rejects += 1
            if rejects < prm.max_rejects:
                out.append(float(kf.x[0, 0]))
                continue
            kf.x = np.array([[z]])
            kf.P = np.array([[prm.p0]])
            rejects = 0
            out.append(z)
            continue
        rejects = 0
        kf.update(z)
        out.append(float(kf.x[0, 0]))
    return out


def run_ours(samples: list[tuple[float, float]], prm: KalmanParams) -> list[float]:
    s = RssiStreams(1)
    return [s.update(0, z, t, prm) for t, z in samples]


def test_matches_filterpy_on_irregular_intervals() -> None:
    rng = np.random.default_rng(4)
    t = np.cumsum(rng.exponential(0.5, 400))
    z = -70 + 3 * np.sin(t / 20) + rng.normal(0, 4, len(t))
    samples = list(zip(t.tolist(), z.tolist(), strict=True))
    prm = KalmanParams()
    assert run_ours(samples, prm) == pytest.approx(filterpy_reference(samples, prm), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 30.0), st.floats(-100.0, -30.0)), min_size=1, max_size=60))
def test_matches_filterpy_with_outliers_gaps_and_resets(steps: list[tuple[float, float]]) -> None:
    t = 0.0
    samples = []
    for dt, z in steps:
        t += dt
        samples.append((t, z))
    prm = KalmanParams()
    assert run_ours(samples, prm) == pytest.approx(filterpy_reference(samples, prm), abs=1e-6)


def test_outlier_is_gated_and_level_change_is_followed() -> None:
    prm = KalmanParams()
    s = RssiStreams(1)
    for i in range(50):
        s.update(0, -70.0, i * 0.3, prm)
    assert s.update(0, -30.0, 15.3, prm) == pytest.approx(-70.0, abs=0.5)  # one reflection: ignored
    # the level really moved (tag walked up to the receiver): after max_rejects it follows
    for i in range(prm.max_rejects):
        level = s.update(0, -45.0, 15.6 + 0.3 * i, prm)
    assert level == pytest.approx(-45.0, abs=1.0)


def test_reset_after_long_gap() -> None:
    prm = KalmanParams()
    s = RssiStreams(1)
    for i in range(20):
        s.update(0, -80.0, i, prm)
    assert s.update(0, -60.0, 20 + prm.reset_after_s + 1, prm) == -60.0
