"""The sans-IO pipeline core: sightings in, zone changes and dwell events out.

    observe_batch(tags, receivers, rssi, t)  ->  per (tag, receiver) Kalman filter
                                              ->  ZoneClassifier + Beliefs (hysteresis),
                                                  ~1 Hz per tag
                                              ->  DwellDetector
    tick(t)                                  ->  timeouts: lost tags, dwell exits, thresholds

The live daemon and `replay` feed the same object, a batch of sightings at a time (what a radio
delivered since the last call, or a block of a trace); the result is the same as feeding them one
by one (`observe`), which tests check, but the Kalman updates and the zone decisions of a batch
run as array operations. Outputs are collected in `events` and `segments` for the caller to
drain. Memory is bounded: a tag unheard for `tag_expiry_s` is
dropped, and at most `max_tags` tags are tracked (the least recently heard is evicted).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .belief import Beliefs
from .classifier import ClassifierParams, ZoneClassifier
from .drift import DriftMonitor
from .dwell import DwellDetector, DwellParams, OngoingStay
from .kalman import FloatArray, IntArray, KalmanParams, StreamBank, occurrence_rank
from .layout import Layout
from .pathloss import RadioModel
from .position_kalman import PositionFilter, PositionParams
from .runs import run_starts
from .stand import StandMemory
from .types import DwellEvent, TagId, ZoneSegment

FLICKER_S = 0.5  # UWB: a return to the current zone shorter than this does not cancel a change


@dataclass(frozen=True, slots=True)
class TrackerParams:
    kalman: KalmanParams = field(default_factory=KalmanParams)
    classifier: ClassifierParams = field(default_factory=ClassifierParams)
    dwell: DwellParams = field(default_factory=DwellParams)
    position: PositionParams = field(default_factory=PositionParams)
    classify_every_s: float = 1.0
    fresh_s: float = 6.0  # a receiver's level counts while it heard the tag this recently
    lost_after_s: float = 8.0  # no receiver heard the tag: its zone becomes "none"
    tag_expiry_s: float = 120.0
    max_tags: int = 5000


class _Tag:
    __slots__ = (
        "last_heard",
        "lost",
        "next_classify",
        "pending",
        "pending_last",
        "pending_since",
        "pending_zone",
        "position",
        "seg_start",
        "seg_zone",
        "slot",
        "tag",
        "uwb_zone",
    )

    def __init__(self, tag: TagId, slot: int) -> None:
        self.tag = tag
        self.slot = slot  # this tag's row in the StreamBank
        self.next_classify = -math.inf
        self.last_heard = -math.inf
        self.seg_zone: str | None = None
        self.seg_start = -math.inf
        self.lost = True
        self.position: PositionFilter | None = None  # UWB tags
        self.uwb_zone: str | None = None
        self.pending_zone: str | None = None
        self.pending = False
        self.pending_since = 0.0
        self.pending_last = 0.0


class ZoneTracker:
    def __init__(
        self,
        layout: Layout,
        model: RadioModel | None = None,
        params: TrackerParams | None = None,
        record_segments: bool = False,
        method: str = "model",
    ) -> None:
        self.params = params or TrackerParams()
        self.layout = layout
        self.classifier = ZoneClassifier(
            layout, model or RadioModel(), self.params.classifier, method
        )
        self.dwell = DwellDetector(self.params.dwell)
        # the layout's fixed reference beacons: taken out of the input, receivers' drift corrected
        self.drift = DriftMonitor.for_layout(layout, self.classifier.model)
        self.rx_index = layout.receiver_index()
        self.n_rx = len(layout.receivers)
        self.events: list[DwellEvent] = []
        self.segments: list[ZoneSegment] = []
        self.record_segments = record_segments
        self._tags: dict[TagId, _Tag] = {}
        self._bank = StreamBank(self.n_rx)
        self._beliefs = Beliefs(self.classifier.n_classes, lag=self.params.classifier.smoothing_lag)
        self._stand = StandMemory()
        self._free: list[int] = []  # slots of dropped tags, reused first
        self._tags_by_slot: list[_Tag | None] = []  # None: a free slot
        self._rx_range = np.arange(self.n_rx)[:, None]
        self.evicted = 0

    @property
    def active_tags(self) -> int:
        return len(self._tags)

    def observe(self, tag: TagId, rx: int, rssi: float, t: float) -> None:
        """One sighting of `tag` by receiver index `rx` (see `rx_index`)."""
        self.observe_batch([tag], np.array([rx]), np.array([rssi], dtype=float), np.array([t]))

    def observe_sightings(self, batch: Sequence[tuple[TagId, int, float, float]]) -> None:
        """A source's batch of (tag, receiver index, rssi, t) tuples, in time order."""
        if batch:
            tags, rx, rssi, t = zip(*batch, strict=True)
            self.observe_batch(
                tags,
                np.array(rx, dtype=np.int64),
                np.array(rssi, dtype=np.float64),
                np.array(t, dtype=np.float64),
            )

    def observe_batch(
        self, tags: Sequence[TagId], rx: IntArray, rssi: FloatArray, t: FloatArray
    ) -> None:
        """Sightings in time order: sighting k is `tags[k]` heard by receiver index `rx[k]`."""
        if self.drift is not None:
            tags, rx, rssi, t = self.drift.take(tags, rx, rssi, t)
        n = len(tags)
        if n == 0:
            return
        in_batch = dict.fromkeys(tags)
        slot_of = {tag: self._tag_for(tag, in_batch).slot for tag in in_batch}
        # most recently heard last: the batch's tags in the order of their last sighting
        self._touch(reversed(list(dict.fromkeys(reversed(tags)))))
        slots = np.fromiter(map(slot_of.__getitem__, tags), dtype=np.int64, count=n)
        order = np.argsort(slots, kind="stable")  # grouped by tag, time order within a tag
        s_slot = slots[order]
        first = run_starts(s_slot)  # s_slot is sorted: as np.unique(..., return_index=True)
        uslots = s_slot[first]
        rows = np.arange(len(uslots)).repeat(np.diff(np.append(first, n)))
        bank = self._bank
        pre = (bank.level.reshape(-1, self.n_rx)[uslots], bank.t.reshape(-1, self.n_rx)[uslots])
        with np.errstate(invalid="ignore", over="ignore"):
            level = bank.update(slots, rx, rssi, t, self.params.kalman)
        # which sightings start a zone decision: a tag is classified every classify_every_s
        every = self.params.classify_every_s
        t_sorted = t[order].tolist()
        # sightings in time order (a trace's small disorder aside) are in time order within
        # each tag's run too: the next decision is found by bisection, a step per decision
        # instead of one per sighting
        ordered = bool((t[1:] >= t[:-1]).all())
        decide: list[int] = []  # positions in the grouped order
        ends = [*first.tolist()[1:], n]
        for lo, hi in zip(first.tolist(), ends, strict=True):
            st = self._slot_tag(int(s_slot[lo]))
            st.last_heard = t_sorted[hi - 1]
            nc = st.next_classify
            if ordered:
                j = bisect_left(t_sorted, nc, lo, hi)
                while j < hi:
                    decide.append(j)
                    nc = t_sorted[j] + every
                    j = bisect_left(t_sorted, nc, j + 1, hi)
            else:
                for j in range(lo, hi):
                    if t_sorted[j] >= nc:
                        nc = t_sorted[j] + every
                        decide.append(j)
            st.next_classify = nc
        if decide:
            self._decide(np.asarray(decide), order, s_slot, rows, rx, t, level, pre)

    def _decide(
        self,
        pos: IntArray,
        order: IntArray,
        s_slot: IntArray,
        rows: IntArray,
        rx: IntArray,
        t: FloatArray,
        level: FloatArray,
        pre: tuple[FloatArray, FloatArray],
    ) -> None:
        """Zone decisions at grouped positions `pos`: each uses its tag's levels as they were
        right after that sighting (the batch's latest per receiver, else the state before it)."""
        n = len(order)
        # latest[i, j]: grouped position of the last sighting by receiver i at or before j
        latest = np.where(rx[order][None, :] == self._rx_range, np.arange(n)[None, :], -1)
        np.maximum.accumulate(latest, axis=1, out=latest)
        last = latest[:, pos].T  # decisions x receivers
        own = (last >= 0) & (s_slot[np.maximum(last, 0)] == s_slot[pos][:, None])
        src = order[np.maximum(last, 0)]
        lv = np.where(own, level[src], pre[0][rows[pos]])
        lt = np.where(own, t[src], pre[1][rows[pos]])
        at = t[order[pos]]
        heard = lt >= (at - self.params.fresh_s)[:, None]
        # the decisions with a receiver in earshot, in sighting order
        dec = np.flatnonzero(heard.any(axis=1))
        if len(dec) == 0:
            return
        dec = dec[np.argsort(order[pos[dec]], kind="stable")]
        heard, lv = heard[dec], lv[dec]
        slots = s_slot[pos[dec]]
        at = at[dec]
        # one round per decision of the same tag in this batch (usually one): each decision's
        # offset prior includes the tag's earlier decisions, whatever the batch size
        rank = occurrence_rank(slots)
        change = np.zeros(len(dec), dtype=bool)
        best = np.zeros(len(dec), dtype=np.int64)
        since = np.zeros(len(dec))
        p = self.params.classifier
        sigma = self.classifier.model.device_sigma_db
        for r in range(int(rank.max(initial=-1)) + 1):
            sel = np.flatnonzero(rank == r)
            mean, prec = self._beliefs.offset_prior(slots[sel], sigma, p)
            ll, off = self.classifier.log_likelihood_offsets(
                heard[sel], lv[sel], mean, prec, (self._stand, slots[sel], at[sel])
            )
            self._beliefs.add_offsets(slots[sel], off)
            change[sel], best[sel], since[sel] = self._beliefs.update(slots[sel], ll, at[sel], p)
        # zone changes and timelines, in sighting order
        zone_ids = self.classifier.zone_ids
        decided = zip(
            slots.tolist(), at.tolist(), change.tolist(), best.tolist(), since.tolist(), strict=True
        )
        for slot, tt, ch, cls, since_j in decided:
            st = self._slot_tag(slot)
            if st.lost:
                st.lost = False
                if st.seg_start == -math.inf:
                    st.seg_start = tt
            if ch:
                self._zone_changed(st.tag, st, zone_ids[cls], max(since_j, st.seg_start))

    def observe_position(
        self, tag: TagId, x: float, y: float, t: float, quality: int = 100
    ) -> None:
        """One UWB fix: filtered, then the zone under it, with the same hysteresis rule as the
        RSSI classifier (a new zone must hold for `confirm_s`; the change is dated back)."""
        st = self._tag_for(tag)
        self._touch((tag,))
        st.last_heard = t
        if st.position is None:
            st.position = PositionFilter()
        fx, fy = st.position.update(x, y, t, quality, self.params.position)
        if st.lost:
            st.lost = False
            if st.seg_start == -math.inf:
                st.seg_start = t
        zone = self.layout.zone_at(fx, fy)
        if zone == st.uwb_zone:
            # back in the current zone: a flicker (< FLICKER_S) does not reset a pending change
            if st.pending and t - st.pending_last > FLICKER_S:
                st.pending = False
            return
        if not st.pending or zone != st.pending_zone:
            st.pending, st.pending_zone, st.pending_since = True, zone, t
        st.pending_last = t
        if t - st.pending_since >= self.params.classifier.confirm_s:
            st.uwb_zone = zone
            st.pending = False
            self._zone_changed(tag, st, zone, max(st.pending_since, st.seg_start))

    def tick(self, t: float) -> None:
        """Advance time without data: lost and expired tags, dwell exits and thresholds."""
        p = self.params
        if self.drift is not None:
            self.drift.tick(t)
        for tag, st in list(self._tags.items()):
            if not st.lost and t - st.last_heard > p.lost_after_s:
                st.lost = True
                self._beliefs.reset(st.slot, st.last_heard)
                self._stand.clear(st.slot)
                st.uwb_zone = None
                self._zone_changed(tag, st, None, st.last_heard)
            if t - st.last_heard > p.tag_expiry_s:
                self._drop(tag, st, t)
        self.events.extend(self.dwell.tick(t))

    def ongoing_stays(self) -> list[OngoingStay]:
        """The open stays, for keeping across a restart."""
        out = []
        for tag, zone, start, away, sent in self.dwell.stays():
            st = self._tags.get(tag)
            last = away if away is not None else (st.last_heard if st is not None else start)
            out.append(OngoingStay(tag, zone, start, last, sent))
        return out

    def resume_stays(self, stays: list[OngoingStay]) -> None:
        """Stays kept from before a restart (see DwellDetector.resume)."""
        self.dwell.resume(stays)

    def finish(self, t: float) -> None:
        """End of input: close every open segment and stay."""
        for tag, st in list(self._tags.items()):
            self._drop(tag, st, min(t, st.last_heard))

    def _touch(self, tags: Iterable[TagId]) -> None:
        """Move `tags` to the end of `_tags` (most recently heard last): eviction is O(1)."""
        d = self._tags
        for tag in tags:
            d[tag] = d.pop(tag)

    def _slot_tag(self, slot: int) -> _Tag:
        st = self._tags_by_slot[slot]
        assert st is not None, "a sighting refers to a free slot"
        return st

    def _tag_for(self, tag: TagId, batch: Container[TagId] = ()) -> _Tag:
        st = self._tags.get(tag)
        if st is not None:
            return st
        if len(self._tags) >= self.params.max_tags:
            # evict the least recently heard tag (not one of the batch being observed): `_tags`
            # is kept in the order tags were last heard, so that is the first one not in the batch
            for old_tag, old in self._tags.items():
                if old_tag not in batch:
                    self._drop(old_tag, old, old.last_heard)
                    self.evicted += 1
                    break
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._tags_by_slot)
            self._bank.grow(slot + 1)
            self._beliefs.grow(slot + 1)
            self._tags_by_slot.append(None)
        self._beliefs.clear(slot)
        self._stand.clear(slot)
        st = _Tag(tag, slot)
        self._tags_by_slot[slot] = st
        self._tags[tag] = st
        return st

    def _drop(self, tag: TagId, st: _Tag, t: float) -> None:
        if st.seg_zone is not None or not st.lost:
            self._zone_changed(tag, st, None, st.last_heard)
        if self.record_segments and st.seg_start > -math.inf and st.seg_start < st.last_heard:
            self.segments.append(ZoneSegment(tag, None, st.seg_start, st.last_heard))
        self.events.extend(self.dwell.close(tag, st.last_heard))
        del self._tags[tag]
        self._bank.clear(st.slot)
        self._free.append(st.slot)
        self._tags_by_slot[st.slot] = None

    def _zone_changed(self, tag: TagId, st: _Tag, zone: str | None, t: float) -> None:
        if zone == st.seg_zone:
            return
        if self.record_segments and st.seg_start > -math.inf and t > st.seg_start:
            self.segments.append(ZoneSegment(tag, st.seg_zone, st.seg_start, t))
        st.seg_zone = zone
        st.seg_start = t
        self.events.extend(self.dwell.update(tag, zone, t))

    # ------------------------------------------------------------------ read-only views
    # For the technician web app (gateway/web): copies of the state, nothing is changed here.
    def tag_view(self, tag: TagId) -> TagView | None:
        st = self._tags.get(tag)
        if st is None:
            return None
        a, b = st.slot * self.n_rx, (st.slot + 1) * self.n_rx
        level = np.where(self._bank.p[a:b] >= 0.0, self._bank.level[a:b], np.nan)
        probs = np.exp(self._beliefs.log_belief[st.slot])
        return TagView(tag, st.seg_zone, st.seg_start, st.last_heard, st.lost, probs, level)

    def tag_ids(self) -> list[TagId]:
        return list(self._tags)

    def levels(self, tags: Sequence[TagId], rx: IntArray) -> FloatArray:
        """Filtered level of each (tag, receiver index) pair now (NaN: no estimate)."""
        where = {t: st.slot if (st := self._tags.get(t)) else -1 for t in dict.fromkeys(tags)}
        slot = np.fromiter(map(where.__getitem__, tags), dtype=np.int64, count=len(tags))
        i = np.where(slot >= 0, slot * self.n_rx + rx, 0)
        known = (slot >= 0) & (self._bank.p[i] >= 0.0)
        return np.where(known, self._bank.level[i], np.nan)


@dataclass(frozen=True, slots=True)
class TagView:
    """One tracked tag as the tracker sees it now: reported zone (None: no zone) since when,
    zone probabilities (in `classifier.zone_ids` order), filtered level per receiver (NaN:
    never heard)."""

    tag: TagId
    zone: str | None
    since: float
    last_heard: float
    lost: bool
    probs: FloatArray
    level: FloatArray
