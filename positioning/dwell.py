"""Dwell detection: a continuous stay of one tag in one zone of at least `min_dwell_s`.

Input is the classifier's zone changes per tag. A stay is not ended by a short excursion: when
the tag leaves its zone (to an aisle, a neighbouring zone, or out of earshot) the dwell waits
`gap_s`; if the tag comes back to the same zone in that time the dwell goes on, otherwise it
ends at the moment the tag left. Events:

- `dwell_threshold` the moment an ongoing dwell reaches `min_dwell_s` (what offers react to);
- `dwell` when it ends (start, end, duration >= min_dwell_s).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .types import DwellEvent, TagId, ZoneId


@dataclass(frozen=True, slots=True)
class OngoingStay:
    """An open stay as it can be kept across a restart: `last_in_zone` is when the tag was last
    known in the zone (its excursion's start, or when it was last heard)."""

    tag: TagId
    zone: ZoneId
    start: float
    last_in_zone: float
    threshold_sent: bool


@dataclass(frozen=True, slots=True)
class DwellParams:
    min_dwell_s: float = 60.0
    gap_s: float = 20.0


class _Stay:
    __slots__ = ("away_since", "next_start", "next_zone", "start", "threshold_sent", "zone")

    def __init__(self, zone: ZoneId, start: float) -> None:
        self.zone = zone
        self.start = start
        self.away_since: float | None = None
        self.next_zone: ZoneId | None = None
        self.next_start = 0.0
        self.threshold_sent = False


class DwellDetector:
    def __init__(self, params: DwellParams | None = None) -> None:
        self.params = params or DwellParams()
        self._stays: dict[TagId, _Stay] = {}

    def __len__(self) -> int:
        return len(self._stays)

    def update(self, tag: TagId, zone: ZoneId | None, t: float) -> list[DwellEvent]:
        """The tag's zone changed to `zone` (None: no zone / not heard) at time `t`."""
        out: list[DwellEvent] = []
        stay = self._stays.get(tag)
        if stay is None:
            if zone is not None:
                self._stays[tag] = _Stay(zone, t)
            return out
        if (
            zone == stay.zone
            and stay.away_since is not None
            and t - stay.away_since <= self.params.gap_s
        ):
            stay.away_since = None  # back within the gap: the dwell goes on
            stay.next_zone = None
            return out
        if stay.away_since is None:
            if zone == stay.zone:
                return out
            stay.away_since = t
        stay.next_zone = zone
        stay.next_start = t
        self._expire(tag, stay, t, out)
        return out

    def tick(self, t: float) -> list[DwellEvent]:
        """Advance time with no new zone data: thresholds reached, excursions that became exits."""
        out: list[DwellEvent] = []
        for tag, stay in list(self._stays.items()):
            self._expire(tag, stay, t, out)
        return out

    def close(self, tag: TagId, t: float) -> list[DwellEvent]:
        """The tag is gone (expired): end its stay at the last time it was in the zone."""
        out: list[DwellEvent] = []
        stay = self._stays.pop(tag, None)
        if stay is not None:
            end = stay.away_since if stay.away_since is not None else t
            self._emit_end(tag, stay, end, out)
        return out

    def close_all(self, t: float) -> list[DwellEvent]:
        out: list[DwellEvent] = []
        for tag in list(self._stays):
            out.extend(self.close(tag, t))
        return out

    def ongoing(self) -> Iterator[tuple[TagId, ZoneId, float, bool]]:
        """(tag, zone, start, away) of every open stay; `away` while on a short excursion."""
        for tag, stay in self._stays.items():
            yield tag, stay.zone, stay.start, stay.away_since is not None

    def stays(self) -> Iterator[tuple[TagId, ZoneId, float, float | None, bool]]:
        """(tag, zone, start, away since or None, threshold sent) of every open stay."""
        for tag, stay in self._stays.items():
            yield tag, stay.zone, stay.start, stay.away_since, stay.threshold_sent

    def resume(self, stays: list[OngoingStay]) -> None:
        """Stays kept across a restart: each is on an excursion since `last_in_zone`, so it goes
        on if its tag is back in the zone within the gap, and otherwise ends where it was last
        seen (the same events a run without the restart would have given)."""
        for s in stays:
            if s.tag in self._stays:
                continue
            stay = _Stay(s.zone, s.start)
            stay.away_since = s.last_in_zone
            stay.threshold_sent = s.threshold_sent
            self._stays[s.tag] = stay

    def next_deadline(self) -> float | None:
        """The earliest time at which tick() could emit something."""
        best: float | None = None
        for stay in self._stays.values():
            if stay.away_since is not None:
                d = stay.away_since + self.params.gap_s
            elif not stay.threshold_sent:
                d = stay.start + self.params.min_dwell_s
            else:
                continue
            best = d if best is None or d < best else best
        return best

    def _expire(self, tag: TagId, stay: _Stay, t: float, out: list[DwellEvent]) -> None:
        p = self.params
        if stay.away_since is None:
            if not stay.threshold_sent and t - stay.start >= p.min_dwell_s:
                stay.threshold_sent = True
                out.append(
                    DwellEvent(
                        "dwell_threshold", tag, stay.zone, stay.start, stay.start + p.min_dwell_s
                    )
                )
            return
        if t - stay.away_since <= p.gap_s:
            return
        self._emit_end(tag, stay, stay.away_since, out)
        if stay.next_zone is None:
            del self._stays[tag]
            return
        new = _Stay(stay.next_zone, stay.next_start)
        self._stays[tag] = new
        self._expire(tag, new, t, out)

    def _emit_end(self, tag: TagId, stay: _Stay, end: float, out: list[DwellEvent]) -> None:
        if end - stay.start >= self.params.min_dwell_s:
            if not stay.threshold_sent:
                out.append(
                    DwellEvent(
                        "dwell_threshold",
                        tag,
                        stay.zone,
                        stay.start,
                        stay.start + self.params.min_dwell_s,
                    )
                )
            out.append(DwellEvent("dwell", tag, stay.zone, stay.start, end))
