"""`shelfgate replay`: a recorded trace through the same pipeline the daemon runs, on trace time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

import orjson

from drivers.replay import TraceStats, read_sightings
from positioning.offers import OfferMatcher
from positioning.tracker import ZoneTracker
from positioning.types import DwellEvent

from .events import Identity, dwell_event_body, offer_event_body

TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    stats: TraceStats
    events: int
    dwells: int
    tags_evicted: int


def replay_trace(
    trace: str,
    tracker: ZoneTracker,
    ident: Identity,
    events_out: IO[bytes],
    timeline_out: IO[bytes] | None = None,
    registered: dict[str, str] | None = None,
    matcher: OfferMatcher | None = None,
) -> ReplaySummary:
    stats = TraceStats()
    seq = 0
    dwells = 0
    observe = tracker.observe
    next_tick = float("-inf")
    pending = tracker.events
    last_t = 0.0

    def offers(t: float) -> None:
        nonlocal seq
        if matcher is None:
            return
        matcher.sync_stays(tracker.dwell.ongoing())
        trigs = matcher.tick(t)
        for tr in trigs:
            seq += 1
            body = offer_event_body(ident, tr, tr.stay_start, tr.at, clock_synced=True)
            body["seq"] = seq
            events_out.write(orjson.dumps(body) + b"\n")

    def flush() -> None:
        nonlocal seq, dwells
        if pending:
            buf = []
            for ev in pending:
                seq += 1
                dwells += ev.kind == "dwell"
                buf.append(_line(ident, ev, seq))
            pending.clear()
            events_out.write(b"".join(buf))
        if timeline_out is not None and tracker.segments:
            timeline_out.write(
                b"".join(orjson.dumps(_seg(ident, s)) + b"\n" for s in tracker.segments)
            )
            tracker.segments.clear()

    for tag, rx, rssi, t in read_sightings(trace, tracker.rx_index, stats, registered):
        observe(tag, rx, rssi, t)
        if t >= next_tick:
            next_tick = t + TICK_S
            tracker.tick(t)
            flush()
            offers(t)
        last_t = t
    tracker.tick(last_t)
    tracker.finish(last_t)
    flush()
    return ReplaySummary(stats, seq, dwells, tracker.evicted)


def _line(ident: Identity, ev: DwellEvent, seq: int) -> bytes:
    body = dwell_event_body(ident, ev, clock_synced=True)
    body["seq"] = seq
    return orjson.dumps(body) + b"\n"


def _seg(ident: Identity, s: Any) -> dict[str, Any]:
    return {
        "tag": ident.pseudonym(s.tag),
        "zone": s.zone,
        "start": round(s.start, 3),
        "end": round(s.end, 3),
    }
