"""Per-tag belief over zones and the hysteresis rule, for many tags at once.

Each tag's belief is filtered like an HMM forward pass with sticky transitions: between two
decisions `dt` apart, a share `1 - exp(-switch_rate_per_s * dt)` of the belief spreads evenly over
all classes, then the decision's log-likelihoods (tempered by `evidence_weight`) are added.

Hysteresis rule (no flapping): the reported class changes only when another class has been the
most probable one, by a posterior ratio of at least `switch_ratio`, at every decision for
`confirm_s` seconds in a row. The switch is then dated back to the first of those decisions.

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
    def __init__(self, n_classes: int, slots: int = 64) -> None:
        self.k = n_classes
        self.log_belief = np.full((slots, n_classes), -math.log(n_classes))
        self.current = np.full(slots, n_classes - 1, dtype=np.int64)  # start in "no zone"
        self.pending = np.full(slots, -1, dtype=np.int64)
        self.since = np.zeros(slots)
        self.last_t = np.full(slots, -math.inf)

    def grow(self, slots: int) -> None:
        n = len(self.current)
        if slots <= n:
            return
        extra = max(slots, 2 * n) - n
        self.log_belief = np.vstack([self.log_belief, np.full((extra, self.k), -math.log(self.k))])
        self.current = np.append(self.current, np.full(extra, self.k - 1, dtype=np.int64))
        self.pending = np.append(self.pending, np.full(extra, -1, dtype=np.int64))
        self.since = np.append(self.since, np.zeros(extra))
        self.last_t = np.append(self.last_t, np.full(extra, -math.inf))

    def reset(self, row: int, t: float) -> None:
        """Back to "no zone" with an even belief (the tag was lost at `t`)."""
        self.log_belief[row] = -math.log(self.k)
        self.current[row] = self.k - 1
        self.pending[row] = -1
        self.last_t[row] = t

    def clear(self, row: int) -> None:
        """A fresh row for a new tag."""
        self.reset(row, -math.inf)

    def update(
        self, rows: IntArray, loglik: FloatArray, t: FloatArray, p: ClassifierParams
    ) -> tuple[BoolArray, IntArray, FloatArray]:
        """Fold in one decision per row (`rows` distinct). Returns, per decision, whether the
        reported class changes, the new class and the time the change is dated back to."""
        k = self.k
        b = self.log_belief[rows]
        dt = t - self.last_t[rows]
        finite = np.isfinite(dt)
        step = finite & (dt > 0)
        if step.any():
            a = -np.expm1(-p.switch_rate_per_s * dt[step])[:, None]
            prob = (1.0 - a) * np.exp(b[step]) + a / k
            b[step] = np.log(np.maximum(prob, 1e-300))
        b[~finite] = -math.log(k)
        self.last_t[rows] = t
        b += p.evidence_weight * np.where(np.isfinite(loglik), loglik, -1e9)
        b -= b.max(axis=1, keepdims=True)
        b -= np.log(np.exp(b).sum(axis=1, keepdims=True))
        self.log_belief[rows] = b
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
