"""Per-tag memory of where in its zone a tag stands (the stand part of a stand/walk model).

Without it a zone's evidence at each decision is the average likelihood of the zone's points,
as if the tag were at a fresh point of the zone every second. People at a shelf stand still:
successive decisions are about the same point. So per tag and zone there is a posterior over
the zone's points; between decisions `dt` apart the tag stays on its point or, with probability
1 - exp(-dt / stand_memory_s), steps to a fresh point of the zone (prior by area):

    predictive_t(p) = (1 - move) posterior_{t-1}(p) + move w(p)
    evidence_t(Z)   = log sum_{p in Z} predictive_t(p) l_t(p)
    posterior_t(p)  = predictive_t(p) l_t(p) / exp(evidence_t(Z))

A stay's evidence then sums to the likelihood of one point held for the stay (less the steps),
which tells a tag standing at one point of a zone from levels that each fit some point of a
neighbouring zone, and the first decision of a tag gives the memoryless score. "No zone" is
scored afresh (people walk through aisles). The zone HMM (`belief.py`) takes these evidences as
before. Posteriors live on the zone points of the candidate area of the decision's loudest
receiver; when a tag's area changes they carry over on the points the areas share (points new
to the tag start from their prior). Memory: one float32 per zone point of an area, per tag.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# at least this share of a zone's predictive is a fresh point at every decision: while a tag is
# elsewhere (the aisle, the next zone) the zone's posterior drifts to its edge nearest the tag,
# and without a floor a tag then entering the zone was held to that edge and called "no zone"
# for tens of seconds (a walk recorded from serial emulators, tests/data/edge-walk). On TUNE
# (held-out aisles and sparse, stores 1-2, 600 s) 0.2 against none: -0.006 / +0.002 accuracy.
MIN_MOVE = 0.2


class StandMemory:
    """Per tag slot (rows, grown on demand): its area (-1: none yet), the time of its last
    decision and its log posterior on that area's zone points (the first columns)."""

    def __init__(self, width: int = 0) -> None:
        self.width = width
        self.area = np.full(0, -1, dtype=np.int64)
        self.t = np.zeros(0)
        self.post = np.zeros((0, width), dtype=np.float32)

    def reserve(self, slots: IntArray, width: int) -> None:
        """Room for `slots` and posteriors `width` points wide (once per round of decisions:
        `predictive` and `store` then only index)."""
        if width > self.width:
            pad = np.zeros((len(self.area), width - self.width), dtype=np.float32)
            self.post = np.hstack([self.post, pad])
            self.width = width
        n = len(self.area)
        need = int(slots.max(initial=-1)) + 1
        if need > n:
            extra = max(need, 2 * n) - n
            self.area = np.append(self.area, np.full(extra, -1, dtype=np.int64))
            self.t = np.append(self.t, np.zeros(extra))
            self.post = np.vstack([self.post, np.zeros((extra, self.width), dtype=np.float32)])

    def clear(self, slot: int) -> None:
        if slot < len(self.area):
            self.area[slot] = -1

    def predictive(
        self,
        slots: IntArray,
        t: FloatArray,
        area: int,
        zone_idx: list[IntArray],
        w: FloatArray,
        tau: float,
    ) -> FloatArray:
        """Per slot, the predictive on the zone points of `area` (`zone_idx[area]`, global and
        ascending; `w` their prior weights within their zones): stay on the point, or step to
        a fresh one. A posterior kept for another area carries over on the points the two
        share (the rest start from their prior); a slot with none yet gets the prior."""
        idx = zone_idx[area]
        nz = len(idx)
        was = self.area[slots]
        q = self.post[slots, :nz].astype(np.float64)
        fresh = was < 0  # (their q is replaced by the prior below: they step for certain)
        other = was != area
        other &= ~fresh
        if other.any():
            for k in np.flatnonzero(other).tolist():
                prev = zone_idx[int(was[k])]
                if len(prev) == 0:
                    q[k] = w
                    continue
                at = np.minimum(np.searchsorted(prev, idx), len(prev) - 1)
                q[k] = np.where(prev[at] == idx, self.post[slots[k], at], w)
        # a step to a fresh point with probability 1 - exp(-dt / tau), at least MIN_MOVE (so
        # never 0: no zone's predictive sums to 0, even for two decisions at one time); a slot
        # without a posterior steps for certain
        dt = t - self.t[slots]
        np.maximum(dt, 0.0, out=dt)
        dt *= -1.0 / tau
        stay = np.exp(dt)
        np.minimum(stay, 1.0 - MIN_MOVE, out=stay)
        stay[fresh] = 0.0
        q *= stay[:, None]
        q += (1.0 - stay)[:, None] * w
        return q

    def store(self, slots: IntArray, t: FloatArray, area: int, post: FloatArray) -> None:
        nz = post.shape[1]
        self.area[slots] = area
        self.t[slots] = t
        self.post[slots, :nz] = post  # float32: half the memory
