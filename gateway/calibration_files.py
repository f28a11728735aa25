"""A calibration walk on disk (DESIGN.md's trace and labels files) into a fitted calibration:
what `shelfgate calibrate` runs and what the web app's wizard runs on the files it recorded, so
the two paths give the same calibration from the same files."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from drivers.trace.reader import TraceStats, read_sightings
from positioning.calibration import CalibrationResult, Stand, calibrate
from positioning.drift import reference_levels
from positioning.errors import InputError
from positioning.layout import Layout
from positioning.tags import TagResolver

Progress = Callable[[float], None]  # trace time reached (unix s)


@dataclass(frozen=True, slots=True)
class Labels:
    stands: list[Stand]
    tags: list[str]  # the tags the labels name, in order of appearance


@dataclass(frozen=True, slots=True)
class FittedWalk:
    result: CalibrationResult
    tag: str
    sightings: list[tuple[int, float, float]]  # the reference beacon's (rx index, rssi, t)

    def calibration_json(self, store_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.result.to_json(store_id)
        return out


def read_labels(path: str | Path) -> Labels:
    """DESIGN.md's `{"tag", "zone" | null, "start", "end"}` lines (x, y, z optional)."""
    p = Path(path)
    if not p.exists():
        raise InputError(str(path), "", "labels file not found")
    stands: list[Stand] = []
    tags: list[str] = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = orjson.loads(line)
            start, end = float(o["start"]), float(o["end"])
            zone = o.get("zone")
            if zone is not None and not isinstance(zone, str):
                raise TypeError
            xyz = [None if o.get(k) is None else float(o[k]) for k in ("x", "y", "z")]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(
                str(path),
                f"line {n}",
                'expected {"tag", "zone" | null, "start", "end"} (x, y, z optional)',
            ) from None
        if end <= start:
            raise InputError(str(path), f"line {n}", "end must be after start")
        stands.append(Stand(zone, start, end, *xyz))
        tg = o.get("tag")
        if isinstance(tg, str) and tg not in tags:
            tags.append(tg)
    if not stands:
        raise InputError(str(path), "", "no labels in the file")
    return Labels(stands, tags)


def fit_walk(
    layout: Layout,
    trace: str | Path,
    labels_path: str | Path,
    tag: str | None = None,
    tag_height: float = 1.1,
    progress: Progress | None = None,
    fitting: Callable[[], None] | None = None,
) -> FittedWalk:
    """The reference beacon's sightings in `trace` during the stands of `labels_path`, fitted."""
    labels = read_labels(labels_path)
    tags = labels.tags
    tag = tag or (tags[0] if len(tags) == 1 else None)
    if tag is None:
        raise InputError(
            str(labels_path), "tag", f"labels name several tags {tags}; choose one with --tag"
        )
    stats = TraceStats()
    sightings: list[tuple[int, float, float]] = []
    refs = {r.tag for r in layout.references}
    ref_sightings: list[tuple[str, int, float]] = []  # the fixed beacons' levels, a baseline
    last_report = float("-inf")
    # the fit sorts what it reads, and a recording merged from several receivers' logs (as the
    # Danis et al. data is, one window per reference point) need not be in time order
    sightings_in = read_sightings(
        trace, layout.receiver_index(), stats, TagResolver(), in_order=False
    )
    for tg, i, rssi, t in sightings_in:
        if tg == tag:
            sightings.append((i, rssi, t))
        elif tg in refs:
            ref_sightings.append((tg, i, rssi))
        if progress is not None and abs(t - last_report) >= 5.0:
            last_report = t
            progress(t)
    if not sightings:
        raise InputError(
            str(trace), "", f"the reference beacon {tag} is never heard by a receiver of the layout"
        )
    if fitting is not None:
        fitting()
    try:
        res = calibrate(layout, sightings, labels.stands, tag_height=tag_height)
    except ValueError as e:
        raise InputError(str(labels_path), "", str(e)) from None
    if ref_sightings:
        levels = reference_levels(layout, ref_sightings)
        res.fit = dataclasses.replace(
            res.fit, model=dataclasses.replace(res.fit.model, references=levels)
        )
    return FittedWalk(res, tag, sightings)


def write_calibration(path: str | Path, obj: dict[str, Any]) -> None:
    """The calibration JSON, written whole or not at all (a power cut leaves the old one)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p)
