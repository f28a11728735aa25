"""The report's plots, drawn with matplotlib's Agg backend on `Figure` objects (no pyplot, no
global state, no display needed): each function returns the PNG's bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import MaxNLocator

from positioning.layout import FloatArray, Layout
from positioning.types import ZoneSegment

from .analysis import Classes
from .inputs import Series

DPI = 100
NO_ZONE = "#d1d5db"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def zone_colours(cls: Classes) -> dict[str | None, str]:
    import matplotlib as mpl

    cmap = mpl.colormaps["tab20"]
    out: dict[str | None, str] = {}
    # tab20's strong shades first, then the light ones; never its greys (no zone is grey)
    order = [k for k in (*range(0, 20, 2), *range(1, 20, 2)) if k not in (14, 15)]
    for k, z in enumerate(c for c in cls if c is not None):
        r, g, b, _ = cmap(order[k % len(order)])
        out[z] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    out[None] = NO_ZONE
    return out


def rssi_plot(tag: str, series: Mapping[str, Series], t0: float, max_rx: int = 4) -> bytes:
    """Raw sightings (dots) and the Kalman filter's level (line) per receiver, the receivers
    hearing the tag most often first."""
    rxs = sorted(series, key=lambda r: -len(series[r].raw))[:max_rx]
    fig = Figure(figsize=(10, 1.0 + 1.7 * max(len(rxs), 1)), layout="constrained")
    axes = fig.subplots(max(len(rxs), 1), 1, sharex=True, squeeze=False)[:, 0]
    if not rxs:
        axes[0].text(0.5, 0.5, "not heard", ha="center", va="center", transform=axes[0].transAxes)
    for ax, rx in zip(axes, rxs, strict=False):
        rt, raw, ft, filt = series[rx].arrays()
        ax.plot((rt - t0) / 60, raw, ".", ms=3, color="#93c5fd", label="raw")
        ax.plot((ft - t0) / 60, filt, "-", lw=1.6, color="#1d4ed8", label="filtered")
        ax.set_ylabel(f"{rx}\ndBm")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", ncols=2, fontsize=8)
    axes[-1].set_xlabel("minutes into the trace")
    fig.suptitle(f"RSSI of {tag}: raw and filtered", fontsize=10)
    return _png(fig)


def timeline_plot(
    tags: Sequence[str],
    truth: Sequence[ZoneSegment] | None,
    timeline: Sequence[ZoneSegment],
    cls: Classes,
    names: Mapping[str, str],
    t0: float,
) -> bytes:
    """Per tag two bars over time: the true zone (upper, when a truth is given) and the
    decided zone (lower), coloured by zone; no zone is grey."""
    colours = zone_colours(cls)
    rows = []
    for tag in tags:
        if truth is not None:
            rows.append((f"{_short(tag)} truth", [s for s in truth if s.tag == tag]))
        rows.append((f"{_short(tag)} decided", [s for s in timeline if s.tag == tag]))
    fig = Figure(figsize=(10, 1.4 + 0.32 * len(rows)), layout="constrained")
    ax = fig.subplots()
    used: set[str | None] = set()
    for k, (_, segs) in enumerate(rows):
        y = len(rows) - 1 - k
        for s in segs:
            used.add(s.zone)
            ax.broken_barh(
                [((s.start - t0) / 60, (s.end - s.start) / 60)],
                (y - 0.38, 0.76),
                color=colours.get(s.zone, NO_ZONE),
                lw=0,
            )
    per_tag = 2 if truth is not None else 1
    for k in range(per_tag, len(rows), per_tag):  # a line between tags
        ax.axhline(len(rows) - k - 0.5, color="#9ca3af", lw=0.6)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel("minutes into the trace")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color=colours[z], label=names.get(z, z) if z else "no zone") for z in cls if z in used
    ]
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    ax.set_title("zone timeline" + (" against the truth" if truth is not None else ""), fontsize=10)
    return _png(fig)


def confusion_plot(m: FloatArray, cls: Classes) -> bytes:
    """Rows: the true zone; columns: the decided one. Colour: share of the row's time;
    numbers: percent of the row (rows and columns without any time are left out)."""
    keep = [k for k in range(len(cls)) if m[k].sum() > 0 or m[:, k].sum() > 0]
    sub = m[keep][:, keep]
    labels = [str(cls[k]) if cls[k] is not None else "no zone" for k in keep]
    share = sub / sub.sum(axis=1, keepdims=True).clip(min=1e-12)
    n = max(len(keep), 1)
    fig = Figure(figsize=(max(4.8, 2.0 + 0.55 * n), max(3.2, 1.6 + 0.5 * n)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(keep)):
        for j in range(len(keep)):
            if sub[i, j] > 0:
                ax.text(
                    j, i, f"{100 * share[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "#111827",
                )  # fmt: skip
    ax.set_xticks(range(len(keep)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), labels, fontsize=8)
    ax.set_xlabel("decided zone")
    ax.set_ylabel("true zone")
    ax.set_title("confusion (% of each true zone's time)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the row")
    return _png(fig)


def floor_plot(
    layout: Layout,
    field: tuple[FloatArray, FloatArray, FloatArray] | None,
    spots: Sequence[tuple[float, float, float]],
    receiver_error: Mapping[str, float],
) -> bytes:
    """The layout to scale: shelves, zones, receivers (with their fit error when calibrated),
    and the calibration's residuals (measured minus fitted level at its stands) as a heatmap."""
    x0, y0, x1, y1 = layout.bounds()
    w, h = x1 - x0, y1 - y0
    fig = Figure(figsize=(min(12.0, 2.0 + 0.3 * w), 1.5 + 0.3 * h * min(1.0, 10 / w * 3)),
                 layout="constrained")  # fmt: skip
    ax = fig.subplots()
    ax.add_patch(Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fc="#fcfcfd", ec="#9ca3af"))
    if field is not None and spots:
        gx, gy, val = field
        # a fixed scale (0 to 8 dB, twice a typical shadowing), so reports compare by eye
        im = ax.pcolormesh(gx, gy, val, cmap="YlOrRd", vmin=0, vmax=max(8.0, float(np.nanmax(val))),
                           shading="nearest", alpha=0.8)  # fmt: skip
        fig.colorbar(im, ax=ax, shrink=0.7, label="calibration residual (rms dB)")
        ax.scatter([s[0] for s in spots], [s[1] for s in spots], s=10, c="#111827",
                   marker="x", lw=0.8, label="calibration stands", zorder=4)  # fmt: skip
    for poly in layout.shelves:
        ax.add_patch(Polygon(poly, fc="#9ca3af", ec="none", alpha=0.55, zorder=2))
    for z in layout.zones:
        ax.add_patch(Polygon(z.polygon, fc="none", ec="#1d4ed8", lw=1.2, zorder=3))
        cx, _ = z.centroid
        top = min(y for _, y in z.polygon)
        ax.text(cx, top + 0.3, z.id, ha="center", va="top", fontsize=7, color="#1e3a8a",
                zorder=5, bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
    for r in layout.receivers:
        ax.plot(r.x, r.y, "^", ms=8, color="#16a34a", mec="white", zorder=6)
        err = receiver_error.get(r.id)
        label = r.id if err is None or math.isnan(err) else f"{r.id} {err:.1f} dB"
        ax.text(r.x, r.y + 0.7, label, ha="center", va="top", fontsize=7, zorder=6,
                bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 1})  # fmt: skip
    ax.set_xlim(x0 - 0.5, x1 + 0.5)
    ax.set_ylim(y1 + 0.5, y0 - 0.5)  # y down, as on the floor plan and in the web app
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    title = "floor: receivers and zones"
    title += " with calibration residuals" if spots else " (no calibration given)"
    ax.set_title(title, fontsize=10)
    if spots:
        ax.legend(loc="lower right", fontsize=7)
    return _png(fig)


def dwell_plot(
    decided: Mapping[str, list[float]],
    true: Mapping[str, list[float]] | None,
    names: Mapping[str, str],
) -> bytes:
    """Per zone a histogram of dwell times (minutes): decided dwells filled, true stays of the
    same minimum as an outline (when a truth is given); shared bins."""
    zones = list(decided)
    every = [v / 60 for z in zones for v in decided[z] + (true or {}).get(z, [])]
    top = max(every, default=1.0)
    bins = _bins(top)
    cols = min(4, max(len(zones), 1))
    nrows = max(1, math.ceil(len(zones) / cols))
    fig = Figure(figsize=(10, 0.6 + 1.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, sharex=True, squeeze=False).ravel()
    for ax, z in zip(axes, zones, strict=False):
        d = [v / 60 for v in decided[z]]
        ax.hist(d, bins=bins, color="#60a5fa", label="decided")
        if true is not None:
            ax.hist([v / 60 for v in true.get(z, [])], bins=bins, histtype="step",
                    color="#111827", lw=1.2, label="truth")  # fmt: skip
        ax.set_title(f"{names.get(z, z)} ({len(d)})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1.0))
        if not d and not (true or {}).get(z):
            ax.text(0.5, 0.5, "no dwells", ha="center", va="center", fontsize=8,
                    color="#6b7280", transform=ax.transAxes)  # fmt: skip
    for ax in axes[len(zones) :]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * cols :]:
        ax.set_xlabel("minutes", fontsize=8)
    if zones:
        axes[0].legend(fontsize=7)
    fig.suptitle("dwell times per zone", fontsize=10)
    return _png(fig)


def _bins(top: float) -> list[float]:
    step = 0.5 if top <= 6 else 1.0 if top <= 15 else 2.0 if top <= 30 else 5.0
    n = max(2, math.ceil(top / step) + 1)
    return [k * step for k in range(n + 1)]


def _short(tag: str) -> str:
    return tag if len(tag) <= 24 else tag[:10] + "…" + tag[-10:]
