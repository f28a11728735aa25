"""Per-tag belief over zones: a stand/walk HMM with fixed-lag smoothing, and the hysteresis rule.

Motion model. The classes are the zones and "no zone" (aisles). People stand at shelves for
tens of seconds and walk through aisles for a few: between two decisions `dt` apart a tag in a
zone leaves it with probability `1 - exp(-zone_leave_rate_per_s * dt)` (into an aisle, or with
share `zone_to_zone_share` straight into some other zone, as between adjacent zones), and a tag
in an aisle enters one of the zones with probability `1 - exp(-aisle_leave_rate_per_s * dt)`.
The decisions' log-likelihoods are tempered by `evidence_weight` (successive decisions share
filtered levels, so they are not independent evidence).

Fixed lag. The class reported for a decision is the smoothed one: the forward belief at that
decision combined with the next `smoothing_lag` decisions (a backward pass over a short
buffer). So the timeline is revised `smoothing_lag` decisions (~ as many seconds) late, and
dated to the decision it is about: a short walk through an aisle between two zones, which the
forward belief alone never confirms, is seen once the tag is in the next zone.

Hysteresis rule (no flapping): the reported class changes only when another class has been the
most probable one (smoothed), by a posterior ratio of at least `switch_ratio`, at every decision
for `confirm_s` seconds in a row; the change is dated back to the first of those decisions. A
tag standing on a boundary, whose evidence swings both ways, therefore stays where it is.

`Beliefs` keeps every tag's state in arrays (one row per tag slot) and updates the rows of a
batch of decisions together.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .classifier import ClassifierParams

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class Beliefs:
    def __init__(self, n_classes: int, slots: int = 64, lag: int = 3) -> None:
        self.k = n_classes
        self.lag = lag
        self.log_belief = np.full((slots, n_classes), -math.log(n_classes))
        self.current = np.full(slots, n_classes - 1, dtype=np.int64)  # start in "no zone"
        self.pending = np.full(slots, -1, dtype=np.int64)
        self.since = np.zeros(slots)
        self.last_t = np.full(slots, -math.inf)
        # the last lag + 1 decisions, oldest first: forward beliefs, tempered likelihoods, times
        self.buf_alpha = np.zeros((slots, lag + 1, n_classes))
        self.buf_ll = np.zeros((slots, lag + 1, n_classes))
        self.buf_t = np.zeros((slots, lag + 1))
        self.count = np.zeros(slots, dtype=np.int64)
        # the tag's transmit offset: sum and number of its decisions' estimates
        self.offset_sum = np.zeros(slots)
        self.offset_n = np.zeros(slots)

    def grow(self, slots: int) -> None:
        n = len(self.current)
        if slots <= n:
            return
        extra = max(slots, 2 * n) - n
        k, lag = self.k, self.lag
        self.log_belief = np.vstack([self.log_belief, np.full((extra, k), -math.log(k))])
        self.current = np.append(self.current, np.full(extra, k - 1, dtype=np.int64))
        self.pending = np.append(self.pending, np.full(extra, -1, dtype=np.int64))
        self.since = np.append(self.since, np.zeros(extra))
        self.last_t = np.append(self.last_t, np.full(extra, -math.inf))
        self.buf_alpha = np.concatenate([self.buf_alpha, np.zeros((extra, lag + 1, k))])
        self.buf_ll = np.concatenate([self.buf_ll, np.zeros((extra, lag + 1, k))])
        self.buf_t = np.concatenate([self.buf_t, np.zeros((extra, lag + 1))])
        self.count = np.append(self.count, np.zeros(extra, dtype=np.int64))
        self.offset_sum = np.append(self.offset_sum, np.zeros(extra))
        self.offset_n = np.append(self.offset_n, np.zeros(extra))

    def reset(self, row: int, t: float) -> None:
        """Back to "no zone" with an even belief (the tag was lost at `t`). Decisions still in
        the lag buffer are dropped: the tag's zone from its last hearing on is "none" anyway."""
        self.log_belief[row] = -math.log(self.k)
        self.current[row] = self.k - 1
        self.pending[row] = -1
        self.last_t[row] = t
        self.count[row] = 0

    def clear(self, row: int) -> None:
        """A fresh row for a new tag."""
        self.reset(row, -math.inf)
        self.offset_sum[row] = 0.0
        self.offset_n[row] = 0.0

    def offset_prior(
        self, rows: IntArray, device_sigma_db: float, p: ClassifierParams
    ) -> tuple[FloatArray, FloatArray]:
        """Per row, the prior mean (dB) and precision of the tag's transmit offset: its
        decisions' mean shrunk toward 0, its variance narrowing with their number."""
        n = self.offset_n[rows]
        n0 = max(p.offset_prior_n, 1e-9)
        mean = self.offset_sum[rows] / (n + n0)
        var = np.maximum(device_sigma_db**2 * n0 / (n + n0), p.offset_floor_db**2)
        return mean, 1.0 / var

    def add_offsets(self, rows: IntArray, offsets: FloatArray) -> None:
        self.offset_sum[rows] += offsets
        self.offset_n[rows] += 1.0

    def update(
        self, rows: IntArray, loglik: FloatArray, t: FloatArray, p: ClassifierParams
    ) -> tuple[BoolArray, IntArray, FloatArray]:
        """Fold in one decision per row (`rows` distinct). Returns, per decision, whether the
        reported class changes, the new class and the time the change is dated back to (a
        decision up to `lag` decisions earlier)."""
        b = self.log_belief[rows]
        dt = t - self.last_t[rows]
        fresh = ~np.isfinite(dt)
        b[fresh] = -math.log(self.k)
        step = ~fresh & (dt > 0)
        if step.any():
            b[step] = np.log(np.maximum(self._forward(np.exp(b[step]), dt[step], p), 1e-300))
        self.last_t[rows] = t
        ll = p.evidence_weight * np.where(np.isfinite(loglik), loglik, -1e9)
        b += ll
        b -= b.max(axis=1, keepdims=True)
        b -= np.log(np.exp(b).sum(axis=1, keepdims=True))
        self.log_belief[rows] = b
        self._push(rows, b, ll, t)
        ready = self.count[rows] > self.lag
        change = np.zeros(len(rows), dtype=bool)
        best = self.current[rows].copy()
        since = np.zeros(len(rows))
        if ready.any():
            r = rows[ready]
            post = self._smoothed(r, p)
            change[ready], best[ready], since[ready] = self._hysteresis(
                r, post, self.buf_t[r, 0], p
            )
        return change, best, since

    def _push(self, rows: IntArray, b: FloatArray, ll: FloatArray, t: FloatArray) -> None:
        for buf, new in ((self.buf_alpha, b), (self.buf_ll, ll)):
            buf[rows, :-1] = buf[rows, 1:]
            buf[rows, -1] = new
        self.buf_t[rows, :-1] = self.buf_t[rows, 1:]
        self.buf_t[rows, -1] = t
        self.count[rows] += 1

    def _forward(self, prob: FloatArray, dt: FloatArray, p: ClassifierParams) -> FloatArray:
        """One step of the motion model (rows of class probabilities, `dt` apart)."""
        pz, pa, zz, nz = self._rates(dt, p)
        zone_mass = prob[:, :-1].sum(axis=1, keepdims=True)
        aisle = prob[:, -1:]
        out = np.empty_like(prob)
        out[:, :-1] = prob[:, :-1] * (1.0 - pz) + (pz * zz * zone_mass + pa * aisle) / nz
        out[:, -1:] = aisle * (1.0 - pa) + pz * (1.0 - zz) * zone_mass
        return out

    def _backward(self, e: FloatArray, dt: FloatArray, p: ClassifierParams) -> FloatArray:
        """The transpose of `_forward`: sum_j T(i -> j) e_j for every class i."""
        pz, pa, zz, nz = self._rates(dt, p)
        zone_sum = e[:, :-1].sum(axis=1, keepdims=True)
        aisle = e[:, -1:]
        out = np.empty_like(e)
        out[:, :-1] = (1.0 - pz) * e[:, :-1] + pz * zz * zone_sum / nz + pz * (1.0 - zz) * aisle
        out[:, -1:] = (1.0 - pa) * aisle + pa * zone_sum / nz
        return out

    def _rates(
        self, dt: FloatArray, p: ClassifierParams
    ) -> tuple[FloatArray, FloatArray, float, int]:
        pz = -np.expm1(-p.zone_leave_rate_per_s * dt)[:, None]
        pa = -np.expm1(-p.aisle_leave_rate_per_s * dt)[:, None]
        return pz, pa, p.zone_to_zone_share, max(self.k - 1, 1)

    def _smoothed(self, rows: IntArray, p: ClassifierParams) -> FloatArray:
        """Posterior of the oldest buffered decision given the `lag` decisions after it."""
        beta = np.zeros((len(rows), self.k))
        for j in range(self.lag, 0, -1):
            x = self.buf_ll[rows, j] + beta
            mx = x.max(axis=1, keepdims=True)
            dt = np.maximum(self.buf_t[rows, j] - self.buf_t[rows, j - 1], 0.0)
            beta = np.log(np.maximum(self._backward(np.exp(x - mx), dt, p), 1e-300)) + mx
        post = self.buf_alpha[rows, 0] + beta
        post -= post.max(axis=1, keepdims=True)
        out: FloatArray = post - np.log(np.exp(post).sum(axis=1, keepdims=True))
        return out

    def _hysteresis(
        self, rows: IntArray, b: FloatArray, t: FloatArray, p: ClassifierParams
    ) -> tuple[BoolArray, IntArray, FloatArray]:
        best = b.argmax(axis=1)
        cur = self.current[rows]
        r = np.arange(len(rows))
        stay = (best == cur) | (b[r, best] - b[r, cur] < math.log(p.switch_ratio))
        since = np.where(~stay & (best != self.pending[rows]), t, self.since[rows])
        change = ~stay & (t - since >= p.confirm_s)
        self.current[rows] = np.where(change, best, cur)
        self.pending[rows] = np.where(stay | change, -1, best)
        self.since[rows] = since
        return change, best, since
