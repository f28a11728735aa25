"""Reading the report's inputs and replaying the trace for what only the pipeline knows (the
filtered RSSI, and the timeline and dwells when they are not given)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from drivers.trace.reader import SightingBlock, TraceStats, read_blocks
from gateway.assembly import build_identity, build_pipeline
from gateway.config import GatewayConfig
from gateway.events import WireEvent
from gateway.pipeline import Pipeline
from positioning.layout import FloatArray, Layout
from positioning.pathloss import RadioModel
from positioning.types import ZoneSegment

Progress = Callable[[float], None]  # trace time reached


@dataclass(slots=True)
class Series:
    """One (tag, receiver) stream: raw sightings and the Kalman filter's level after them."""

    raw_t: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    filt_t: list[float] = field(default_factory=list)
    filt: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        return (
            np.array(self.raw_t), np.array(self.raw), np.array(self.filt_t), np.array(self.filt)
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Replayed:
    timeline: list[ZoneSegment]
    dwells: list[ZoneSegment]
    rssi: dict[str, dict[str, Series]]  # tag -> receiver id -> series
    stats: TraceStats


def replay(
    trace: str,
    layout: Layout,
    model: RadioModel | None,
    cfg: GatewayConfig,
    tags: Sequence[str],
    min_dwell_s: float | None = None,
    progress: Progress | None = None,
) -> Replayed:
    """The trace through the pipeline `replay` runs (raw ids: to match a truth), a second of
    trace at a time, keeping raw and filtered levels of `tags`."""
    pipeline = build_pipeline(
        cfg,
        layout,
        model,
        identity=build_identity(cfg, layout, raw_ids=True),
        min_dwell_s=min_dwell_s,
        record_segments=True,
    )
    ids = layout.receiver_ids
    wanted = set(tags)
    rssi: dict[str, dict[str, Series]] = {t: {} for t in tags}
    dwells: list[ZoneSegment] = []
    timeline: list[ZoneSegment] = []
    stats = TraceStats()

    def take(events: list[WireEvent]) -> None:
        for ev in events:
            body = ev.body()
            if body["type"] == "dwell":
                dwells.append(ZoneSegment(body["tag"], body["zone"], body["start"], body["end"]))
        timeline.extend(pipeline.take_segments())

    for blk in read_blocks(trace, pipeline.tracker.rx_index, stats, pipeline.resolver):
        for sub in _seconds(blk):
            take(pipeline.feed_block(sub))
            if wanted:
                _keep(pipeline, sub, wanted, rssi, ids)
        if progress is not None and len(blk):
            progress(float(blk.t[-1]))
    take(pipeline.finish())
    return Replayed(timeline, dwells, rssi, stats)


def _seconds(blk: SightingBlock) -> list[SightingBlock]:
    """The block cut at whole seconds of trace time (batch sizes never change a decision)."""
    sec = np.floor(blk.t)
    cuts = np.flatnonzero(np.diff(sec)) + 1
    bounds = [0, *cuts.tolist(), len(blk)]
    return [
        SightingBlock(blk.tags[a:b], blk.rx[a:b], blk.rssi[a:b], blk.t[a:b])
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]


def _keep(
    pipeline: Pipeline,
    sub: SightingBlock,
    wanted: set[str],
    rssi: dict[str, dict[str, Series]],
    ids: Sequence[str],
) -> None:
    sel = [k for k, tag in enumerate(sub.tags) if tag in wanted]
    if not sel:
        return
    last: dict[tuple[str, int], float] = {}
    for k in sel:
        tag, i = sub.tags[k], int(sub.rx[k])
        s = rssi[tag].setdefault(ids[i], Series())
        s.raw_t.append(float(sub.t[k]))
        s.raw.append(float(sub.rssi[k]))
        last[(tag, i)] = float(sub.t[k])
    keys = list(last)
    levels = pipeline.levels([k[0] for k in keys], np.array([k[1] for k in keys], dtype=np.int64))
    for (tag, i), lv in zip(keys, levels.tolist(), strict=True):
        if not np.isnan(lv):
            s = rssi[tag][ids[i]]
            s.filt_t.append(last[(tag, i)])
            s.filt.append(float(lv))
