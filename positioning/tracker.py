"""The sans-IO pipeline core: sightings in, zone changes and dwell events out.

    observe(tag, receiver, rssi, t)  ->  per (tag, receiver) Kalman filter
                                      ->  ZoneClassifier + ZoneBelief (hysteresis), ~1 Hz per tag
                                      ->  DwellDetector
    tick(t)                          ->  timeouts: lost tags, dwell exits, thresholds

The live daemon and `replay` feed the same object; outputs are collected in `events` and
`segments` for the caller to drain. Memory is bounded: a tag unheard for `tag_expiry_s` is
dropped, and at most `max_tags` tags are tracked (the least recently heard is evicted).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from .classifier import ClassifierParams, ZoneBelief, ZoneClassifier
from .dwell import DwellDetector, DwellParams
from .kalman import KalmanParams, RssiStreams
from .layout import Layout
from .pathloss import RadioModel
from .position_kalman import PositionFilter, PositionParams
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
        "belief",
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
        "streams",
        "uwb_zone",
    )

    def __init__(self, n_rx: int, n_classes: int) -> None:
        self.streams = RssiStreams(n_rx)
        self.belief = ZoneBelief(n_classes)
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
        self.rx_index = layout.receiver_index()
        self.n_rx = len(layout.receivers)
        self.events: list[DwellEvent] = []
        self.segments: list[ZoneSegment] = []
        self.record_segments = record_segments
        self._tags: dict[TagId, _Tag] = {}
        self._kalman = functools.partial(RssiStreams.update, prm=self.params.kalman)
        self.evicted = 0

    @property
    def active_tags(self) -> int:
        return len(self._tags)

    def observe(self, tag: TagId, rx: int, rssi: float, t: float) -> None:
        """One sighting of `tag` by receiver index `rx` (see `rx_index`)."""
        st = self._tags.get(tag)
        if st is None:
            st = self._new_tag(tag)
        st.last_heard = t
        self._kalman(st.streams, rx, rssi, t)
        if t >= st.next_classify:
            st.next_classify = t + self.params.classify_every_s
            self._classify(tag, st, t)

    def observe_position(
        self, tag: TagId, x: float, y: float, t: float, quality: int = 100
    ) -> None:
        """One UWB fix: filtered, then the zone under it, with the same hysteresis rule as the
        RSSI classifier (a new zone must hold for `confirm_s`; the change is dated back)."""
        st = self._tags.get(tag)
        if st is None:
            st = self._new_tag(tag)
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
        for tag, st in list(self._tags.items()):
            if not st.lost and t - st.last_heard > p.lost_after_s:
                st.lost = True
                st.belief.reset(st.last_heard)
                st.uwb_zone = None
                self._zone_changed(tag, st, None, st.last_heard)
            if t - st.last_heard > p.tag_expiry_s:
                self._drop(tag, st, t)
        self.events.extend(self.dwell.tick(t))

    def finish(self, t: float) -> None:
        """End of input: close every open segment and stay."""
        for tag, st in list(self._tags.items()):
            self._drop(tag, st, min(t, st.last_heard))

    def _new_tag(self, tag: TagId) -> _Tag:
        if len(self._tags) >= self.params.max_tags:
            oldest = min(self._tags.items(), key=lambda kv: kv[1].last_heard)
            self._drop(oldest[0], oldest[1], oldest[1].last_heard)
            self.evicted += 1
        st = _Tag(self.n_rx, self.classifier.n_classes)
        self._tags[tag] = st
        return st

    def _drop(self, tag: TagId, st: _Tag, t: float) -> None:
        if st.seg_zone is not None or not st.lost:
            self._zone_changed(tag, st, None, st.last_heard)
        if self.record_segments and st.seg_start > -math.inf and st.seg_start < st.last_heard:
            self.segments.append(ZoneSegment(tag, None, st.seg_start, st.last_heard))
        self.events.extend(self.dwell.close(tag, st.last_heard))
        del self._tags[tag]

    def _classify(self, tag: TagId, st: _Tag, t: float) -> None:
        fresh = t - self.params.fresh_s
        s = st.streams
        heard = [i for i in range(self.n_rx) if s.t[i] >= fresh]
        if not heard:
            return
        if st.lost:
            st.lost = False
            if st.seg_start == -math.inf:
                st.seg_start = t
        ll = self.classifier.log_likelihood(heard, [s.level[i] for i in heard])
        change = st.belief.update(ll, t, self.params.classifier)
        if change is not None:
            cls, since = change
            self._zone_changed(tag, st, self.classifier.zone_ids[cls], max(since, st.seg_start))

    def _zone_changed(self, tag: TagId, st: _Tag, zone: str | None, t: float) -> None:
        if zone == st.seg_zone:
            return
        if self.record_segments and st.seg_start > -math.inf and t > st.seg_start:
            self.segments.append(ZoneSegment(tag, st.seg_zone, st.seg_start, t))
        st.seg_zone = zone
        st.seg_start = t
        self.events.extend(self.dwell.update(tag, zone, t))
