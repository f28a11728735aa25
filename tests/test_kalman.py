"""The production RSSI filter gives filterpy's KalmanFilter estimates on the same sequences,
fed one measurement at a time or as one batch of many interleaved streams."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter
from hypothesis import given, settings
from hypothesis import strategies as st

from positioning.kalman import KalmanParams, StreamBank


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


class One:
    """A single stream of a StreamBank, fed one measurement per call."""

    def __init__(self) -> None:
        self.bank = StreamBank(1, slots=1)

    def update(self, z: float, t: float, prm: KalmanParams) -> float:
        with np.errstate(invalid="ignore", over="ignore"):
            out = self.bank.update(np.array([0]), np.array([0]), np.array([z]), np.array([t]), prm)
        return float(out[0])


def run_ours(samples: list[tuple[float, float]], prm: KalmanParams) -> list[float]:
    s = One()
    return [s.update(z, t, prm) for t, z in samples]


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
    s = One()
    for i in range(50):
        s.update(-70.0, i * 0.3, prm)
    assert s.update(-30.0, 15.3, prm) == pytest.approx(-70.0, abs=0.5)  # one reflection: ignored
    # the level really moved (tag walked up to the receiver): after max_rejects it follows
    for i in range(prm.max_rejects):
        level = s.update(-45.0, 15.6 + 0.3 * i, prm)
    assert level == pytest.approx(-45.0, abs=1.0)


def test_reset_after_long_gap() -> None:
    prm = KalmanParams()
    s = One()
    for i in range(20):
        s.update(-80.0, i, prm)
    assert s.update(-60.0, 20 + prm.reset_after_s + 1, prm) == -60.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.integers(0, 3), st.floats(0.0, 20.0), st.floats(-100.0, -30.0)
        ),
        min_size=1,
        max_size=120,
    ),
    st.integers(1, 40),
)
def test_batches_of_interleaved_streams_match_filterpy(
    steps: list[tuple[int, int, float, float]], batch: int
) -> None:
    """Many (slot, receiver) streams interleaved, cut into batches of any size: every stream's
    estimates are filterpy's on that stream alone."""
    prm = KalmanParams()
    bank = StreamBank(4, slots=1)
    bank.grow(3)
    t = 0.0
    rows = []
    for slot, rx, dt, z in steps:
        t += dt / 10
        rows.append((slot, rx, t, z))
    got: list[float] = []
    for i in range(0, len(rows), batch):
        part = rows[i : i + batch]
        with np.errstate(invalid="ignore", over="ignore"):
            out = bank.update(
                np.array([r[0] for r in part]),
                np.array([r[1] for r in part]),
                np.array([r[3] for r in part]),
                np.array([r[2] for r in part]),
                prm,
            )
        got.extend(out.tolist())
    for key in {(r[0], r[1]) for r in rows}:
        mine = [k for k, r in enumerate(rows) if (r[0], r[1]) == key]
        ref = filterpy_reference([(rows[k][2], rows[k][3]) for k in mine], prm)
        assert [got[k] for k in mine] == pytest.approx(ref, abs=1e-6)
