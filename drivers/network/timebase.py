"""The input clock of networked receivers played faster than real time (`speed=N`, `epoch=`):
one clock for the whole pipeline, so a tag's silence ends its stay after the dwell gap of
*store* time, not of wall time (with a per-source scale only the timestamps ran fast and the
pipeline's deadlines did not: at 10 x the stays open at the end of a recording never closed)."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.registry import parse_uri
from drivers.source import SourceSpec
from gateway.clock import Clock, ScaledClock
from positioning.errors import InputError

NETWORK_KINDS = ("theengs", "espresense", "shelfgate")


def input_clock(specs: Sequence[str | SourceSpec], clock: Clock) -> Clock:
    """`clock`, or a `ScaledClock` when the networked sources ask for `speed=` (all alike)."""
    scales: set[tuple[float, float | None]] = set()
    where = ""
    for spec in specs:
        text = spec if isinstance(spec, str) else spec.uri
        uri = parse_uri(text)
        if uri.kind not in NETWORK_KINDS or "speed" not in uri.params:
            continue
        speed = uri.number("speed", 1.0)
        epoch = uri.number("epoch", 0.0) if "epoch" in uri.params else None
        if speed <= 0:
            raise InputError(text, "speed", "expected a positive factor")
        scales.add((speed, epoch))
        where = text
    if len(scales) > 1:
        raise InputError(
            where, "speed", "every networked source must use the same speed= and epoch="
        )
    if not scales:
        return clock
    speed, epoch = scales.pop()
    return clock if speed == 1.0 and epoch is None else ScaledClock(clock, speed, epoch)
