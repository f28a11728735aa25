"""The values a source yields: one frozen value per kind of reading, nothing else.

An `Advertisement` is what a receiver heard, as it heard it: no tag is resolved here (that is
the pipeline's job, once, for every source). A `PositionFix` is a tag that locates itself (a
UWB module on a cart). Live sources stamp `t` with the monotonic clock at reception; recorded
ones (a trace) carry the trace's own unix time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RSSI_MIN = -127  # dBm: the most negative value HCI reports
RSSI_MAX = 20  # dBm: a receiver touching a loud transmitter; anything above is a corrupt reading


@dataclass(frozen=True, slots=True)
class Advertisement:
    receiver: str  # receiver id of the layout
    address: str  # the advertiser's address as the radio reports it (may rotate)
    rssi: int  # dBm
    mfg: Mapping[int, bytes]  # company id -> bytes after the company id
    svc: Mapping[str, bytes]  # 128-bit service UUID -> service data
    t: float  # monotonic seconds at reception (live) or the trace's unix time
    tx: int | None = None
    name: str | None = None
    scan_response: bool = False  # the answer to an active scan's request, not the advertisement


@dataclass(frozen=True, slots=True)
class PositionFix:
    """A position (metres, layout coordinates) of a tag that locates itself (UWB)."""

    receiver: str  # the module that reported it
    tag: str
    x: float
    y: float
    t: float
    quality: int  # 0..100
    z: float = 0.0
    anchors: int = 0


Reading = Advertisement | PositionFix
