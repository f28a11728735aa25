"""`shelfgate replay`: a recorded trace through the same pipeline the daemon runs, on trace time."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from positioning.errors import InputError

from .common import open_out

if TYPE_CHECKING:
    from drivers.trace.parallel import TraceReaders
    from gateway.config import GatewayConfig
    from gateway.events import Identity
    from positioning.layout import Layout
    from positioning.offers import Catalogue
    from positioning.pathloss import RadioModel
    from positioning.tags import TagResolver


def cmd_replay(a: argparse.Namespace) -> int:
    from drivers.trace.parallel import TraceReaders
    from drivers.trace.reader import require_trace
    from gateway.assembly import build_identity, build_resolver, load_calibration
    from gateway.config import load_config
    from gateway.layoutfile import load_layout

    cfg = load_config(a.config)
    layout = load_layout(a.layout)
    model = load_calibration(a.calibration) if a.calibration else None
    identity = build_identity(cfg, layout, raw_ids=a.raw_ids)
    catalogue = None
    if a.offers:
        from gateway.offerfile import load_catalogue

        catalogue = load_catalogue(a.offers, [z.id for z in layout.zones])
    trace = require_trace(a.trace)  # before any output file is touched
    for out in (a.events, a.timeline):
        if out is not None and Path(out).resolve() == trace.resolve():
            raise InputError(out, "", "is the trace itself: writing there would destroy it")
    # the parsers start now and read the first blocks while the pipeline is imported and built
    resolver = build_resolver(cfg)
    with TraceReaders(a.trace, layout.receiver_index(), resolver, a.workers) as readers:
        return _replay(a, cfg, layout, model, identity, catalogue, resolver, readers)


def _replay(
    a: argparse.Namespace,
    cfg: GatewayConfig,
    layout: Layout,
    model: RadioModel | None,
    identity: Identity,
    catalogue: Catalogue | None,
    resolver: TagResolver,
    readers: TraceReaders,
) -> int:
    from gateway.assembly import build_pipeline
    from gateway.trace_replay import replay_trace

    pipeline = build_pipeline(
        cfg,
        layout,
        model,
        identity=identity,
        min_dwell_s=a.min_dwell,
        record_segments=a.timeline is not None,
        method=a.classifier,
        resolver=resolver,
    )
    if catalogue is not None:
        from positioning.offers import OfferMatcher

        pipeline.matcher = OfferMatcher(catalogue, layout.timezone)
    from .progress import Progress, trace_span

    ends = trace_span(a.trace)
    bar = Progress("replay", (ends[1] - ends[0]) if ends else None)

    seen = 0

    def progress(t: float, n: int) -> None:
        nonlocal seen
        seen += n
        if ends:
            bar.update(t - ends[0], f"{seen:,} tag sightings")
        else:
            bar.update(seen, "tag sightings")

    t0 = time.perf_counter()
    with open(open_out(a.events), "wb") as ev:
        tl = open(open_out(a.timeline), "wb") if a.timeline else None  # noqa: SIM115
        try:
            s = replay_trace(a.trace, pipeline, ev, tl, progress=progress, readers=readers)
        finally:
            bar.close()
            if tl is not None:
                tl.close()
    dt = time.perf_counter() - t0
    st = s.stats
    span = (st.last_t - st.first_t) if st.first_t is not None and st.last_t is not None else 0.0
    print(
        f"replayed {st.lines} lines ({st.sightings} tag sightings, {st.skipped_no_frame} without a "
        f"beacon frame, {st.bad_lines} malformed, {st.unknown_receiver} from receivers not in the "
        f"layout, {st.out_of_order} out of time order) covering {span:.0f} s in {dt:.2f} s ({st.lines / max(dt, 1e-9):,.0f} lines/s): "
        f"{s.dwells} dwells, {s.events} events -> {a.events}",
        file=sys.stderr,
    )
    drift = pipeline.tracker.drift
    for d in drift.report() if drift is not None else []:
        if d.shift_db is not None and d.applied_db:
            print(
                f"reference beacons: receiver {d.receiver} hears them {d.shift_db:+.1f} dB from "
                f"calibration (corrected by {d.applied_db:+.1f} dB)",
                file=sys.stderr,
            )
        if d.alert:
            print(f"reference beacons: {d.alert}", file=sys.stderr)
    if (
        st.lines
        and st.unknown_receiver
        and st.unknown_receiver == st.sightings + st.unknown_receiver
    ):
        raise InputError(a.trace, "rx", f"no receiver id matches the layout {a.layout}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("replay", help="run a recorded trace through the pipeline")
    r.add_argument("trace")
    r.add_argument("--layout", required=True)
    r.add_argument("--calibration")
    r.add_argument("--config")
    r.add_argument("--events", required=True)
    r.add_argument("--timeline")
    r.add_argument("--min-dwell", type=float, default=None)
    r.add_argument("--raw-ids", action="store_true", help="keep raw tag ids (for evaluation)")
    r.add_argument("--offers", help="an offer catalogue (JSON): writes offer_triggered events too")
    r.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes parsing the trace beside the main one (default: one per core but one, at "
        "least 1, at most 3; 0: parse in the main process)",
    )
    r.add_argument(
        "--classifier",
        choices=["model", "nearest"],
        default="model",
        help="zone decision: the calibrated model (default) or the nearest-receiver baseline",
    )
    r.set_defaults(func=cmd_replay)
