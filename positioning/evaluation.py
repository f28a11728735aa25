"""Scoring against ground truth: dwell precision / recall / F1 and time-weighted zone accuracy.

- A predicted dwell matches a true dwell of the same tag and zone when their temporal IoU is at
  least 0.5; matching is one-to-one, best IoU first. True dwells are truth segments in a zone
  lasting at least `min_dwell_s`.
- Zone accuracy: every `step` seconds of every tag's true presence, is the timeline's zone the
  true zone (no zone counts as a zone)? Instants the timeline does not cover count as no zone.
  Instants within `collar` seconds of a true zone change are not scored (as the collar in
  speaker-diarisation scoring): whether a walker crossed a border at 10:01:02 or 10:01:03 is not
  something a system deciding once a second can be judged on. collar=0 scores every instant.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .types import ZoneSegment


@dataclass(frozen=True, slots=True)
class Scores:
    true_dwells: int
    predicted_dwells: int
    matched: int
    precision: float
    recall: float
    f1: float
    median_start_error_s: float | None
    median_end_error_s: float | None
    zone_accuracy: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "true_dwells": self.true_dwells,
            "predicted_dwells": self.predicted_dwells,
            "matched": self.matched,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "median_start_error_s": _r(self.median_start_error_s),
            "median_end_error_s": _r(self.median_end_error_s),
            "zone_accuracy": _r(self.zone_accuracy),
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = min(a1, b1) - max(a0, b0)
    if inter <= 0:
        return 0.0
    union = max(a1, b1) - min(a0, b0)
    return inter / union if union > 0 else 0.0


def true_dwells(truth: list[ZoneSegment], min_dwell_s: float) -> list[ZoneSegment]:
    return [s for s in truth if s.zone is not None and s.duration >= min_dwell_s]


def score(
    truth: list[ZoneSegment],
    predicted: list[ZoneSegment],
    min_dwell_s: float,
    timeline: list[ZoneSegment] | None = None,
    step: float = 1.0,
    collar: float = 0.0,
) -> Scores:
    gt = true_dwells(truth, min_dwell_s)
    by_key: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for j, g in enumerate(gt):
        by_key[(g.tag, g.zone)].append(j)
    pairs: list[tuple[float, int, int]] = []
    for i, p in enumerate(predicted):
        for j in by_key.get((p.tag, p.zone), ()):
            v = iou(p.start, p.end, gt[j].start, gt[j].end)
            if v >= 0.5:
                pairs.append((v, i, j))
    pairs.sort(reverse=True)
    used_p: set[int] = set()
    used_g: set[int] = set()
    start_err, end_err = [], []
    for _, i, j in pairs:
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        start_err.append(abs(predicted[i].start - gt[j].start))
        end_err.append(abs(predicted[i].end - gt[j].end))
    m = len(used_p)
    prec = m / len(predicted) if predicted else (1.0 if not gt else 0.0)
    rec = m / len(gt) if gt else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    acc = zone_accuracy(truth, timeline, step, collar) if timeline is not None else None
    return Scores(
        len(gt),
        len(predicted),
        m,
        prec,
        rec,
        f1,
        statistics.median(start_err) if start_err else None,
        statistics.median(end_err) if end_err else None,
        acc,
    )


def zone_accuracy(
    truth: list[ZoneSegment], timeline: list[ZoneSegment], step: float = 1.0, collar: float = 0.0
) -> float | None:
    tl: dict[str, list[ZoneSegment]] = defaultdict(list)
    for s in timeline:
        tl[s.tag].append(s)
    starts: dict[str, list[float]] = {}
    for tag, segs in tl.items():
        segs.sort(key=lambda s: s.start)
        starts[tag] = [s.start for s in segs]
    hit = total = 0
    for s in truth:
        segs = tl.get(s.tag, [])
        st = starts.get(s.tag, [])
        t = s.start + step / 2 + collar
        while t < s.end - collar:
            k = bisect.bisect_right(st, t) - 1
            z = segs[k].zone if k >= 0 and segs[k].end > t else None
            hit += z == s.zone
            total += 1
            t += step
    return hit / total if total else None
