"""Small frozen value types passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass

TagId = str
ZoneId = str
ReceiverId = str


@dataclass(frozen=True, slots=True)
class ZoneSegment:
    """A tag stayed in `zone` (None: no zone, an aisle) from `start` to `end`."""

    tag: TagId
    zone: ZoneId | None
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class DwellEvent:
    """A dwell observed by the detector.

    kind is "dwell" (emitted on exit, start..end complete) or "dwell_threshold" (emitted at the
    moment an ongoing dwell reaches the minimum; end is that moment).
    """

    kind: str
    tag: TagId
    zone: ZoneId
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start
