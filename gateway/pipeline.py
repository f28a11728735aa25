"""The one pipeline `run`, `replay` and `scan` share: readings in, wire events out.

    feed(batch) -> events        live readings (Advertisements, PositionFixes), monotonic time
    feed_block(block) -> events  a trace's column block (tags already resolved), trace time
    advance(t) -> events         time passes without data: lost tags, dwell exits, offers due
    finish(t) -> events          end of input: every open stay is closed
    next_deadline() -> t | None  when `advance` is next due (None: nothing is pending)

Tags are resolved here, once, by the `TagResolver`. Zone decisions tick every TICK_S of input
time: the batch up to and including the first sighting at or after the next tick, then the tick,
exactly where feeding sightings one by one would tick, so batch sizes never change a decision.
Live input is on the monotonic clock; events leave with wall times (the clock's offset at the
moment they are shaped) and the clock's sync state. A trace's time is wall time already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from drivers.advertisement import RSSI_MAX, RSSI_MIN, Advertisement, PositionFix, Reading
from drivers.trace.reader import SightingBlock
from positioning.classifier import ZoneClassifier
from positioning.drift import DriftMonitor
from positioning.dwell import OngoingStay
from positioning.pathloss import RadioModel
from positioning.tags import TagResolver
from positioning.tracker import TagView, ZoneTracker
from positioning.types import DwellEvent, ZoneSegment

from . import stays
from .clock import Clock
from .events import Identity, WireEvent, dwell_event, offer_event
from .stays import SuspendedStay

if TYPE_CHECKING:
    from positioning.offers import OfferMatcher  # loaded only when a catalogue is used

TICK_S = 1.0


def _canonical(
    rx: np.typing.NDArray[np.int64], t: np.typing.NDArray[np.float64]
) -> list[int] | None:
    """The order that puts simultaneous sightings (one instant heard by several receivers) by
    receiver, in time order; None when nothing moves (the usual case: no cost). A zone decision takes a tag's
    levels right after the sighting it is made at, so without this the order in which several
    receivers' reports of one instant came in (over separate network connections: any) would
    change decisions: replayed from a file and heard over MQTT, a borderline stay's start moved
    by up to 30 s."""
    if len(t) < 2:
        return None
    d = np.diff(t)
    ties = d == 0
    if not ties.any():
        if (d >= 0).all():
            return None
    elif (d >= 0).all() and (np.diff(rx)[ties] >= 0).all():
        return None
    order: list[int] = np.lexsort((rx, t)).tolist()
    return order


class LiveTap(Protocol):
    """Watches live input without changing it (the web app's receiver health and RSSI history):
    every reading as it arrives, then the resolved sightings once the pipeline has taken them."""

    def readings(self, batch: Sequence[Reading]) -> None: ...

    def sightings(
        self, tags: Sequence[str], rx: Sequence[int], rssi: Sequence[float], t: Sequence[float]
    ) -> None: ...


class Pipeline:
    def __init__(
        self,
        tracker: ZoneTracker,
        resolver: TagResolver,
        identity: Identity,
        clock: Clock | None = None,
    ) -> None:
        self.tracker = tracker
        self.resolver = resolver
        self.identity = identity
        self.matcher: OfferMatcher | None = None
        self._clock = clock or Clock()
        self._rx_index = tracker.rx_index
        self._next_tick = float("-inf")
        self._last_t = 0.0
        self._live = True
        self._suspended: dict[str, SuspendedStay] = {}  # kept from before a restart, by key
        self._wall_start: dict[tuple[str, str, float], float] = {}  # resumed stays' wall starts
        self.unknown_receivers: dict[str, int] = {}  # receiver id not in the layout -> count
        self.not_tags = 0  # advertisements that carry no tag
        self.implausible = 0  # readings outside physical ranges (a corrupt receiver), dropped
        self.tap: LiveTap | None = None  # live input only, never a trace's blocks

    # ------------------------------------------------------------------ input
    def feed(self, batch: Sequence[Reading]) -> list[WireEvent]:
        """Live readings of one source, in reception order."""
        self._live = True
        if self.tap is not None:
            self.tap.readings(batch)
        out: list[WireEvent] = []
        tags: list[str] = []
        rxs: list[int] = []
        rssi: list[float] = []
        ts: list[float] = []
        resolve, index = self.resolver.resolve, self._rx_index
        for r in batch:
            if type(r) is Advertisement:
                if not RSSI_MIN <= r.rssi <= RSSI_MAX:
                    self.implausible += 1
                    continue
                tag = resolve(r.mfg, r.svc, r.address)
                if tag is None:
                    self.not_tags += 1
                    continue
                i = index.get(r.receiver)
                if i is None:
                    self.unknown_receivers[r.receiver] = (
                        self.unknown_receivers.get(r.receiver, 0) + 1
                    )
                    continue
                tags.append(tag)
                rxs.append(i)
                rssi.append(float(r.rssi))
                ts.append(r.t)
            elif type(r) is PositionFix:
                self.tracker.observe_position(r.tag, r.x, r.y, r.t, r.quality)
                out += self._tick_if_due(r.t)
        if tags:
            if self._suspended:
                self._rekey(tags)
            rx_a, t_a = np.array(rxs, dtype=np.int64), np.array(ts, dtype=np.float64)
            order = _canonical(rx_a, t_a)
            if order is not None:  # networked receivers' simultaneous sightings, reordered
                tags = [tags[i] for i in order]
                rxs, rssi, ts = (
                    [rxs[i] for i in order],
                    [rssi[i] for i in order],
                    t_a[order].tolist(),
                )
                rx_a, t_a = rx_a[order], t_a[order]
            out += self._observe(tags, rx_a, np.array(rssi, dtype=np.float64), t_a)
            if self.tap is not None:
                self.tap.sightings(tags, rxs, rssi, ts)
        return out

    def feed_block(self, blk: SightingBlock) -> list[WireEvent]:
        """A recorded trace's sightings (on the trace's own time)."""
        self._live = False
        order = _canonical(blk.rx, blk.t)
        if order is None:
            return self._observe(blk.tags, blk.rx, blk.rssi, blk.t)
        tags = list(map(blk.tags.__getitem__, order))
        return self._observe(tags, blk.rx[order], blk.rssi[order], blk.t[order])

    def _observe(
        self,
        tags: Sequence[str],
        rx: np.typing.NDArray[np.int64],
        rssi: np.typing.NDArray[np.float64],
        ts: np.typing.NDArray[np.float64],
    ) -> list[WireEvent]:
        out: list[WireEvent] = []
        observe = self.tracker.observe_batch
        lo, n = 0, len(tags)
        while lo < n:
            due = ts[lo:] >= self._next_tick
            hi = lo + int(due.argmax()) + 1 if due.any() else n
            observe(tags[lo:hi], rx[lo:hi], rssi[lo:hi], ts[lo:hi])
            out += self._tick_if_due(float(ts[hi - 1]))
            lo = hi
        return out

    def _tick_if_due(self, t: float) -> list[WireEvent]:
        self._last_t = t
        if t < self._next_tick:
            return []
        return self.advance(t)

    # ------------------------------------------------------------------ time
    def advance(self, t: float) -> list[WireEvent]:
        """Time `t` (the input's clock) has come: lost tags, dwell exits, offers due."""
        self._next_tick = t + TICK_S
        self._last_t = max(self._last_t, t)
        self.tracker.tick(t)
        out = self._shape(self.tracker.events)
        self.tracker.events.clear()
        if self._suspended:
            out += self._expire_suspended(t)
        if self.matcher is not None:
            out += self._offers(t)
        return out

    def finish(self, t: float | None = None) -> list[WireEvent]:
        """End of input (or shutdown): every open stay closes where its tag was last heard."""
        t = self._last_t if t is None else t
        self.tracker.tick(t)
        self.tracker.finish(t)
        out = self._shape(self.tracker.events)
        self.tracker.events.clear()
        return out

    def next_deadline(self) -> float | None:
        """When `advance` is next due, on the input's clock; None while nothing is tracked (an
        empty store at night: no wake-ups at all)."""
        if self.tracker.active_tags == 0 and not len(self.tracker.dwell) and not self._suspended:
            return None
        return self._next_tick

    # ------------------------------------------------------------------ restarts
    def suspend(self) -> list[SuspendedStay]:
        """The open stays, to keep across a restart (live input only)."""
        if not self._live:
            return []
        off, _ = self._offset()
        out = [
            stays.suspend(
                s, self._wall_start.get((s.tag, s.zone, s.start), s.start + off), off, self.identity
            )
            for s in self.tracker.ongoing_stays()
        ]
        return out + list(self._suspended.values())

    def resume(self, kept: list[SuspendedStay]) -> None:
        """Stays kept by the previous run: each waits for its tag (see gateway.stays)."""
        self._suspended = {s.key: s for s in kept}

    def _rekey(self, tags: Sequence[str]) -> None:
        """A tag of a kept stay is heard again: the stay goes on under its raw id."""
        off, _ = self._offset()
        key = self.identity.pseudonym_key
        for tag in set(tags):
            s = self._suspended.pop(key(tag), None)
            if s is None:
                continue
            start = s.start - off
            self._wall_start[(tag, s.zone, start)] = s.start
            self.tracker.resume_stays(
                [OngoingStay(tag, s.zone, start, s.last_in_zone - off, s.threshold_sent)]
            )

    def _expire_suspended(self, t: float) -> list[WireEvent]:
        off, synced = self._offset()
        gap = self.tracker.params.dwell.gap_s
        min_dwell = self.tracker.params.dwell.min_dwell_s
        out: list[WireEvent] = []
        for key, s in list(self._suspended.items()):
            if t + off - s.last_in_zone > gap:
                del self._suspended[key]
                out += stays.expired_events(s, self.identity, min_dwell, synced)
        return out

    def now(self) -> float:
        """The input's clock now (monotonic for live input)."""
        return self._clock.mono() if self._live else self._last_t

    @property
    def live(self) -> bool:
        return self._live

    # ------------------------------------------------------------------ calibration
    @property
    def radio_model(self) -> RadioModel:
        """The calibration zones are decided with now."""
        return self.tracker.classifier.model

    def set_radio_model(self, model: RadioModel) -> None:
        """A new calibration in the running pipeline (the web app's wizard applies one, no
        restart): zone decisions from the next one on use it; the Kalman filters, beliefs,
        stays and dwell timers carry on (the zones are the layout's, unchanged)."""
        old = self.tracker.classifier
        self.tracker.classifier = ZoneClassifier(old.layout, model, old.params, old.method)
        # drift is measured against the new calibration's reference levels from now on
        self.tracker.drift = DriftMonitor.for_layout(old.layout, model)

    # ------------------------------------------------------------------ read-only views
    def tag_view(self, tag: str) -> TagView | None:
        """A tracked tag's zone, probabilities and filtered levels now (input clock)."""
        return self.tracker.tag_view(tag)

    def levels(
        self, tags: Sequence[str], rx: np.typing.NDArray[np.int64]
    ) -> np.typing.NDArray[np.float64]:
        """The filtered level of each (tag, receiver index) pair now (NaN: no estimate)."""
        return self.tracker.levels(tags, rx)

    def tag_views(self) -> list[TagView]:
        views = (self.tracker.tag_view(t) for t in self.tracker.tag_ids())
        return [v for v in views if v is not None]

    @property
    def zone_classes(self) -> tuple[str | None, ...]:
        """The zones `TagView.probs` is over, in order (None: no zone)."""
        return self.tracker.classifier.zone_ids

    def to_wall(self, t: float) -> float:
        """Wall time of an instant on the input's clock."""
        return t + self._offset()[0]

    def take_segments(self) -> list[ZoneSegment]:
        """The zone timeline's closed segments since the last call (`record_segments`)."""
        segs = self.tracker.segments[:]
        self.tracker.segments.clear()
        return segs

    # ------------------------------------------------------------------ shaping
    def _offset(self) -> tuple[float, bool]:
        if not self._live:
            return 0.0, True
        return self._clock.wall() - self._clock.mono(), self._clock.synced()

    def _shape(self, events: list[DwellEvent]) -> list[WireEvent]:
        if not events:
            return []
        off, synced = self._offset()
        ident = self.identity
        if off == 0.0:
            return [dwell_event(ident, ev, synced) for ev in events]
        out = []
        for ev in events:
            start = self._wall_start.get((ev.tag, ev.zone, ev.start), ev.start + off)
            if ev.kind == "dwell":
                self._wall_start.pop((ev.tag, ev.zone, ev.start), None)
            out.append(
                dwell_event(
                    ident, DwellEvent(ev.kind, ev.tag, ev.zone, start, ev.end + off), synced
                )
            )
        return out

    def _offers(self, t: float) -> list[WireEvent]:
        assert self.matcher is not None
        off, synced = self._offset()
        self.matcher.sync_stays(self.tracker.dwell.ongoing())
        return [
            offer_event(self.identity, trig, trig.stay_start + off, trig.at + off, synced)
            for trig in self.matcher.tick(t, synced, off)
        ]
