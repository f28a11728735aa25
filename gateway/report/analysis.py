"""The report's figures as numbers (the plots draw these, the page tabulates them)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from positioning.layout import FloatArray, Layout
from positioning.pathloss import RadioModel
from positioning.types import ZoneSegment

Classes = list[str | None]  # the layout's zones, then None (no zone)


def classes(layout: Layout) -> Classes:
    out: Classes = [z.id for z in layout.zones]
    out.append(None)
    return out


def confusion(
    truth: Sequence[ZoneSegment], timeline: Sequence[ZoneSegment], cls: Classes, step: float = 1.0
) -> FloatArray:
    """Seconds of each true zone (rows) decided as each zone (columns), sampled every `step`
    seconds of every tag's true presence, as `evaluate`'s zone accuracy samples them (instants
    the timeline does not cover count as no zone; zones outside the layout are left out)."""
    pos = {z: k for k, z in enumerate(cls)}
    by_tag: dict[str, list[ZoneSegment]] = defaultdict(list)
    for s in timeline:
        by_tag[s.tag].append(s)
    starts = {}
    for tag, segs in by_tag.items():
        segs.sort(key=lambda s: s.start)
        starts[tag] = [s.start for s in segs]
    m = np.zeros((len(cls), len(cls)))
    for s in truth:
        row = pos.get(s.zone)
        if row is None:
            continue
        segs, st = by_tag.get(s.tag, []), starts.get(s.tag, [])
        t = s.start + step / 2
        while t < s.end:
            k = bisect.bisect_right(st, t) - 1
            z = segs[k].zone if k >= 0 and segs[k].end > t else None
            col = pos.get(z)
            if col is not None:
                m[row, col] += step
            t += step
    return m


def busiest_tags(truth: Sequence[ZoneSegment], n: int) -> list[str]:
    """The `n` tags with the most time in zones (ties: by id)."""
    total: dict[str, float] = defaultdict(float)
    for s in truth:
        if s.zone is not None:
            total[s.tag] += s.end - s.start
    return sorted(total, key=lambda t: (-total[t], t))[:n]


def stays_by_zone(
    stays: Sequence[ZoneSegment], cls: Classes, min_s: float = 0.0
) -> dict[str, list[float]]:
    """Durations (s) of the stays in each zone of the layout, at least `min_s` long."""
    out: dict[str, list[float]] = {str(z): [] for z in cls if z is not None}
    for s in stays:
        if s.zone in out and s.end - s.start >= min_s:
            out[s.zone].append(s.end - s.start)
    return out


def stand_residuals(model: RadioModel) -> list[tuple[float, float, float]]:
    """Per calibration stand spot: (x, y, rms dB of the measured levels' deviation from the
    fitted path-loss curve over the receivers that heard it)."""
    out = []
    for x, y, res in model.corrections:
        if res:
            v = np.array(list(res.values()), dtype=float)
            out.append((float(x), float(y), float(math.sqrt(float((v * v).mean())))))
    return out


def residual_field(
    layout: Layout, spots: Sequence[tuple[float, float, float]], step: float = 0.25,
    radius: float = 3.0,
) -> tuple[FloatArray, FloatArray, FloatArray]:  # fmt: skip
    """The stand residuals spread over the floor (Gaussian weights, `radius` m: shadowing is
    correlated over a few metres); NaN farther than 2.5 radii from any stand (not measured)."""
    x0, y0, x1, y1 = layout.bounds()
    gx, gy = np.meshgrid(np.arange(x0, x1 + step / 2, step), np.arange(y0, y1 + step / 2, step))
    if not spots:
        return gx, gy, np.full(gx.shape, np.nan)
    p = np.array(spots, dtype=float)
    d2 = (gx[..., None] - p[:, 0]) ** 2 + (gy[..., None] - p[:, 1]) ** 2
    w = np.exp(-d2 / (2 * radius**2))
    val = (w * p[:, 2]).sum(axis=-1) / np.maximum(w.sum(axis=-1), 1e-12)
    val[d2.min(axis=-1) > (2.5 * radius) ** 2] = np.nan
    return gx, gy, val
