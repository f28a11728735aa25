"""`shelfgate report`: plots of a trace (and its truth, timeline, events, calibration) in one
self-contained HTML file, the PNGs beside it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from positioning.errors import InputError

from .common import open_out

RSSI_TAGS = 3
TIMELINE_TAGS = 6


def cmd_report(a: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(
            "matplotlib",
            "",
            "not installed: the report's plots need it (pip install 'shelfgate[report]')",
        ) from None
    from drivers.trace.reader import TraceStats, read_blocks, require_trace
    from gateway.assembly import load_calibration
    from gateway.config import load_config
    from gateway.layoutfile import load_layout
    from gateway.report import analysis as an
    from gateway.report import page, plots
    from gateway.report.inputs import replay
    from gateway.segments_file import read_segments
    from positioning.evaluation import true_dwells
    from positioning.tags import TagResolver

    from .progress import Progress, trace_span

    cfg = load_config(a.config)
    layout = load_layout(a.layout)
    require_trace(a.trace)
    model = load_calibration(a.calibration) if a.calibration else None
    cal_json = json.loads(Path(a.calibration).read_text("utf-8")) if a.calibration else {}
    truth = read_segments(a.truth, "truth") if a.truth else None
    given_tl = read_segments(a.timeline, "timeline") if a.timeline else None
    given_ev = read_segments(a.events, "event", {"dwell"}) if a.events else None
    min_dwell = a.min_dwell if a.min_dwell is not None else cfg.pipeline.min_dwell_s
    out = open_out(a.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(a.out, "--out", "expected an .html file name")
    png_dir = out.with_name(out.stem + "_plots")

    tags: list[str] = list(a.tag or [])
    if not tags and truth:
        tags = an.busiest_tags(truth, RSSI_TAGS)
    if not tags:  # the first tags the trace names
        for blk in read_blocks(a.trace, layout.receiver_index(), TraceStats(), TagResolver()):
            tags = list(dict.fromkeys(blk.tags))[:RSSI_TAGS]
            break
    span = trace_span(a.trace)
    # the replay fills 90% of the bar, the plots the rest
    bar = Progress("report", 100.0 if span else None)
    n_plots = len(tags) + 4
    done_plots = 0

    def plotting(what: str) -> None:
        nonlocal done_plots
        bar.stage(f"plotting {what}", 90.0 + 10.0 * done_plots / n_plots if span else None)
        done_plots += 1

    t_first = span[0] if span else 0.0
    try:
        bar.stage("replaying the trace")
        rep = replay(
            a.trace, layout, model, cfg, tags, min_dwell,
            progress=lambda t: bar.update(
                90.0 * (t - t_first) / (span[1] - span[0]) if span else t - t_first,
                "replaying the trace",
            ),
        )  # fmt: skip
        st = rep.stats
        if st.first_t is None:
            raise InputError(a.trace, "", "no advertisement of a tag of the layout's receivers")
        t0 = st.first_t
        timeline = given_tl if given_tl is not None else rep.timeline
        dwells = given_ev if given_ev is not None else rep.dwells
        if (
            truth is not None
            and timeline
            and not {s.tag for s in truth} & {s.tag for s in timeline}
        ):
            raise InputError(
                a.timeline or a.truth, "tag",
                "no tag of the timeline is in the truth (replay with --raw-ids for a report)",
            )  # fmt: skip
        cls = an.classes(layout)
        names = {z.id: z.name for z in layout.zones}
        made: list[page.Plot] = []
        notes: list[str] = []
        for k, tag in enumerate(tags, 1):
            plotting(f"RSSI of tag {k} of {len(tags)}")
            if tag not in rep.rssi or not rep.rssi[tag]:
                notes.append(f"tag {tag} is never heard in the trace")
                continue
            made.append(page.Plot(
                f"rssi-{k}", f"RSSI raw vs filtered: {tag}",
                plots.rssi_plot(tag, rep.rssi[tag], t0),
                "dots: each advertisement as heard; line: the pipeline's Kalman-filtered level "
                "(after each second of trace), the four receivers hearing the tag most often",
            ))  # fmt: skip
        plotting("the zone timeline")
        tl_tags = list(dict.fromkeys(
            tags + an.busiest_tags(truth if truth is not None else timeline, TIMELINE_TAGS)
        ))[:TIMELINE_TAGS]  # fmt: skip
        made.append(page.Plot(
            "timeline", "Zone timeline" + (" against the truth" if truth else ""),
            plots.timeline_plot(tl_tags, truth, timeline, cls, names, t0),
            f"timeline: {'--timeline ' + a.timeline if a.timeline else 'replayed'}",
        ))  # fmt: skip
        if truth is not None:
            plotting("the confusion matrix")
            m = an.confusion(truth, timeline, cls)
            total = m.sum()
            acc = float(m.trace() / total) if total else float("nan")
            made.append(page.Plot(
                "confusion", "Confusion between zones",
                plots.confusion_plot(m, cls),
                f"every second of every tag's true presence; zone accuracy {100 * acc:.1f}% "
                "(no collar: `evaluate` leaves 2 s around each true change out)",
                page.confusion_table(m, cls),
            ))  # fmt: skip
        else:
            notes.append("no --truth: no confusion matrix, and no truth in the timeline")
        plotting("the floor")
        spots = an.stand_residuals(model) if model is not None else []
        field = an.residual_field(layout, spots) if spots else None
        rx_err = {
            str(r["id"]): float(r["residual_db"])
            for r in cal_json.get("receivers", [])
            if isinstance(r, dict) and isinstance(r.get("residual_db"), int | float)
        }
        made.append(page.Plot(
            "floor", "Floor: receivers, zones and calibration residuals",
            plots.floor_plot(layout, field, spots, rx_err),
            "heatmap: how far the levels measured at the calibration stands (x) lie from the "
            "fitted path-loss curve (rms over the receivers), spread over ~3 m; receivers "
            "labelled with their fit error" if spots else "no --calibration: no residuals",
            page.residual_table(spots) if spots else "",
        ))  # fmt: skip
        plotting("dwell times")
        decided = an.stays_by_zone(dwells, cls)
        true_st = an.stays_by_zone(true_dwells(truth, min_dwell), cls) if truth else None
        made.append(page.Plot(
            "dwell", "Dwell times per zone",
            plots.dwell_plot(decided, true_st, names),
            f"dwell events ({'--events ' + a.events if a.events else 'replayed'}); outline: "
            f"true stays of at least {min_dwell:g} s",
            page.dwell_table(decided, true_st),
        ))  # fmt: skip
    finally:
        bar.close()
    png_dir.mkdir(parents=True, exist_ok=True)
    for p in made:
        (png_dir / f"{p.key}.png").write_bytes(p.png)
    inputs = [("trace", a.trace), ("layout", a.layout)] + [
        (k, v) for k, v in (("calibration", a.calibration), ("truth", a.truth),
                            ("timeline", a.timeline), ("events", a.events)) if v
    ]  # fmt: skip
    inputs.append(("trace span", f"{st.lines} lines, {(st.last_t or t0) - t0:.0f} s"))
    html = page.render(f"shelfgate report: {layout.store_id}", inputs, made, notes)
    out.write_text(html, encoding="utf-8")
    print(f"wrote {out} ({len(made)} plots; PNGs in {png_dir})", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("report", help="plots of a trace in one self-contained HTML file")
    r.add_argument("trace")
    r.add_argument("--layout", required=True)
    r.add_argument("--out", required=True, help="the HTML file (PNGs go to <name>_plots/)")
    r.add_argument("--calibration", help="calibration JSON: the model, and residuals on the floor")
    r.add_argument("--config", help="gateway.toml (pipeline settings)")
    r.add_argument("--truth", help="ground truth (simulate --truth): timeline and confusion")
    r.add_argument("--timeline", help="a replay's --timeline (default: replayed here)")
    r.add_argument("--events", help="a replay's --events, for dwell times (default: replayed)")
    r.add_argument("--tag", action="append", help="a tag for the RSSI plots (repeatable)")
    r.add_argument("--min-dwell", type=float, default=None)
    r.set_defaults(func=cmd_report)
