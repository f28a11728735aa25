"""A recorded trace through the pipeline, on trace time: events numbered in order, as the daemon
would number them, and optionally the zone timeline."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import orjson

from drivers.trace.parallel import TraceReaders
from drivers.trace.reader import TraceStats
from positioning.types import ZoneSegment

from .events import Identity, WireEvent
from .pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    stats: TraceStats
    events: int
    dwells: int
    tags_evicted: int


def replay_trace(
    trace: str,
    pipeline: Pipeline,
    events_out: IO[bytes],
    timeline_out: IO[bytes] | None = None,
    workers: int | None = None,
    progress: Callable[[float, int], None] | None = None,
    readers: TraceReaders | None = None,
) -> ReplaySummary:
    """The trace through `pipeline`; events written numbered in order, as the daemon would.
    `progress(t, n)`: after each block, the trace time reached and the block's sightings.
    `readers`: the trace's parsers, already started (for the pipeline's receivers and resolver);
    else they are started here with `workers`, and ended before returning."""
    tracker = pipeline.tracker
    if readers is None:
        with TraceReaders(trace, tracker.rx_index, pipeline.resolver, workers) as own:
            return replay_trace(trace, pipeline, events_out, timeline_out, None, progress, own)
    if readers.rx_index != tracker.rx_index or readers.resolver is not pipeline.resolver:
        raise ValueError("the trace's readers were started for another pipeline")
    gc.freeze()  # the layout, model and imports: long-lived, never worth rescanning
    stats = TraceStats()
    seq = dwells = 0
    ident = pipeline.identity

    def write(events: list[WireEvent]) -> None:
        nonlocal seq, dwells
        if events:
            buf = []
            for ev in events:
                seq += 1
                dwells += ev.type == "dwell"
                body = ev.body()
                body["seq"] = seq
                buf.append(orjson.dumps(body) + b"\n")
            events_out.write(b"".join(buf))
        if timeline_out is not None:
            segs = pipeline.take_segments()
            if segs:
                timeline_out.write(b"".join(orjson.dumps(_seg(ident, s)) + b"\n" for s in segs))

    for blk in readers.blocks(stats):
        write(pipeline.feed_block(blk))
        if progress is not None and len(blk):
            progress(float(blk.t[-1]), len(blk))
    write(pipeline.finish())
    return ReplaySummary(stats, seq, dwells, tracker.evicted)


def _seg(ident: Identity, s: ZoneSegment) -> dict[str, Any]:
    return {
        "tag": ident.pseudonym(s.tag),
        "zone": s.zone,
        "start": round(s.start, 3),
        "end": round(s.end, 3),
    }
