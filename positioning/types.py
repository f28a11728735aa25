"""Small frozen value types passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TagId = str
ZoneId = str
ReceiverId = str


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One advertisement as a receiver heard it (the trace format of DESIGN.md)."""

    t: float
    rx: ReceiverId
    addr: str
    rssi: int
    mfg: dict[int, bytes] = field(default_factory=dict)
    svc: dict[str, bytes] = field(default_factory=dict)
    tx: int | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "rx": self.rx, "addr": self.addr, "rssi": self.rssi}
        if self.mfg:
            out["mfg"] = {str(k): v.hex() for k, v in self.mfg.items()}
        if self.svc:
            out["svc"] = {k: v.hex() for k, v in self.svc.items()}
        if self.tx is not None:
            out["tx"] = self.tx
        if self.name is not None:
            out["name"] = self.name
        return out


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

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "zone": self.zone, "start": self.start, "end": self.end}


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
