"""`shelfgate replay`: a recorded trace through the same pipeline the daemon runs, on trace time."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson

from drivers.replay import TraceStats
from drivers.trace_workers import read_blocks_parallel
from positioning.tracker import ZoneTracker
from positioning.types import DwellEvent

from .events import Identity, dwell_event_body, offer_event_body

if TYPE_CHECKING:
    from positioning.offers import OfferMatcher

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
    workers: int | None = None,
) -> ReplaySummary:
    gc.freeze()  # the layout, model and imports: long-lived, never worth rescanning
    stats = TraceStats()
    seq = 0
    dwells = 0
    observe = tracker.observe_batch
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

    for blk in read_blocks_parallel(trace, tracker.rx_index, stats, registered, workers):
        # the batch up to and including the first sighting at or after the next tick, then the
        # tick: exactly where feeding the sightings one by one would tick
        ts = blk.t
        lo, n = 0, len(blk)
        while lo < n:
            due = ts[lo:] >= next_tick
            hi = lo + int(due.argmax()) + 1 if due.any() else n
            observe(blk.tags[lo:hi], blk.rx[lo:hi], blk.rssi[lo:hi], ts[lo:hi])
            last_t = float(ts[hi - 1])
            if last_t >= next_tick:
                next_tick = last_t + TICK_S
                tracker.tick(last_t)
                flush()
                offers(last_t)
            lo = hi
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
