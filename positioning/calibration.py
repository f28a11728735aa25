"""Fitting the radio model from a technician's calibration walk, and judging the fit.

The technician carries a reference beacon and stands at known spots (one label per stand: the
zone, or null for an aisle, optionally the exact x / y / z). For every stand and receiver the
mean RSSI is one sample; the path-loss model is fitted to those samples (pathloss.fit_path_loss).
The report says, in plain words, how well each receiver fits and which zones the fitted model
cannot tell apart well.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .calibration_report import (
    MOVED_MIN_M,
    MovedReceiver,
    StandVerdict,
    fit_error_at,
    locate_receiver,
    receiver_advice,
    verdict_lines,
)
from .classifier import ZoneClassifier
from .errors import CalibrationError
from .layout import FloatArray, Layout, points_in_polygon
from .pathloss import (
    PathLossFit,
    RadioModel,
    distances,
    fit_path_loss,
    predicted_rssi,
    shelf_metres,
)

MIN_SAMPLES_PER_STAND = 3
# A receiver's mean at a stand goes into the fit whenever it heard the beacon at least
# MIN_SAMPLES_PER_STAND times during it, however rarely next to the best receiver. A far
# receiver that hears only the luckier advertisements gives a mean biased high, but it is the
# walk's only word on the far field, which decides the zones without a receiver of their own
# (one receiver per two zones); and the classifier compares the tracker's levels of such a
# receiver, biased the same way, with the fitted curve. Against leaving out those below 0.6 of
# the best count, TUNE held-out zone accuracy over 9 store x seed runs: one per two zones
# 0.688 -> 0.736, one per zone 0.810 -> 0.827, halls 0.700 -> 0.716. Modelling the bias
# instead (a Tobit-style truncated mean in fit and classifier) was worse at every spread tried.


@dataclass(frozen=True, slots=True)
class Stand:
    zone: str | None
    start: float
    end: float
    x: float | None = None
    y: float | None = None
    z: float | None = None


@dataclass(slots=True)
class CalibrationResult:
    fit: PathLossFit
    stands_used: int
    stands_total: int
    per_receiver: list[dict[str, Any]] = field(default_factory=list)
    confusable: list[dict[str, Any]] = field(default_factory=list)
    stand_accuracy: float | None = None
    stands: list[StandVerdict] = field(default_factory=list)
    moved: list[MovedReceiver] = field(default_factory=list)

    @property
    def model(self) -> RadioModel:
        return self.fit.model

    def to_json(self, store_id: str) -> dict[str, Any]:
        return {
            "version": 1,
            "store": store_id,
            "radio_model": self.fit.model.to_json(),
            "fit": {
                "shared_offset_db": round(self.fit.shared_offset_db, 3),
                "shared_exponent": round(self.fit.shared_exponent, 4),
                "slope_db_per_decade": round(10 * self.fit.shared_exponent, 3),
                "residual_db": round(self.fit.residual_db, 3),
                "shelf_db_per_m": round(self.fit.model.shelf_db_per_m, 3),
                "samples": self.fit.n,
                "stands_used": self.stands_used,
                "stands_total": self.stands_total,
                "stand_accuracy": self.stand_accuracy,
            },
            "misclassified_stands": [
                {"zone": v.zone, "start": v.start, "end": v.end, "decided": v.decided}
                for v in self.stands
                if not v.correct
            ],
            "moved_receivers": [
                {"id": m.id, "x": m.x, "y": m.y, "distance_m": round(m.distance_m, 1)}
                for m in self.moved
            ],
            "receivers": self.per_receiver,
            "confusable_zones": self.confusable,
        }

    def report(self) -> str:
        f = self.fit
        lines = [
            f"Fitted {f.n} samples from {self.stands_used} of {self.stands_total} stands: "
            f"RSSI = {f.shared_offset_db:.1f} - {10 * f.shared_exponent:.1f} log10(d), "
            f"typical error {f.residual_db:.1f} dB.",
        ]
        if f.model.shelf_db_per_m > 0:
            lines.append(
                f"Paths through the declared shelves lose {f.model.shelf_db_per_m:.1f} dB per metre "
                "of shelf (below its top)."
            )
        lines.append("Receivers:")
        moved = {m.id: m for m in self.moved}
        for r in self.per_receiver:
            lines.append(receiver_advice(r, moved, float(r.get("heard_share", 1.0))))
        if self.stand_accuracy is None and not self.stands:
            lines.append("The layout has no zones, so zone separation was not judged.")
            return "\n".join(lines)
        unheard = [str(r["id"]) for r in self.per_receiver if r.get("heard_share", 1.0) == 0]
        lines += verdict_lines(self.stands, self.confusable, unheard, list(moved))
        return "\n".join(lines)


def stand_position(layout: Layout, s: Stand) -> tuple[float, float] | None:
    if s.x is not None and s.y is not None:
        return s.x, s.y
    if s.zone is not None:
        for z in layout.zones:
            if z.id == s.zone:
                return z.centroid
    return None


def calibrate(
    layout: Layout,
    sightings: Iterable[tuple[int, float, float]],
    stands: list[Stand],
    tag_height: float = 1.1,
    ridge: float = 4.0,
) -> CalibrationResult:
    """`sightings`: (receiver index, rssi, t) of the reference beacon, in any order.

    Raises CalibrationError (a ShelfgateError: one line for the user) for labels naming zones
    the layout does not have and for too little data."""
    _check_zones(layout, stands)
    arr = np.array(list(sightings), dtype=float).reshape(-1, 3)
    arr = arr[np.argsort(arr[:, 2], kind="stable")]
    stand_means = _stand_means(layout, arr, stands)
    sensitivity = min(-90.0, float(np.percentile(arr[:, 1], 0.5)) - 1.0)
    fit, used = _fit(layout, stand_means, tag_height, ridge, sensitivity)
    # a stand labelled with its zone only was somewhere in the zone, not at its centroid: put
    # each one where the first fit says its levels were heard best, and fit again
    labelled = stand_means
    for _ in range(LOCATE_ROUNDS):
        stand_means = _locate_stands(layout, fit.model, labelled, tag_height)
        fit, used = _fit(layout, stand_means, tag_height, ridge, sensitivity)
    corrections = _corrections(layout, fit.model, stand_means)
    fit = dataclasses.replace(
        fit, model=dataclasses.replace(fit.model, corrections=tuple(c for _, c in corrections))
    )
    res = CalibrationResult(fit, used, len(stands))
    # every reception counts for where a receiver is and whether it hears at all
    all_means = _stand_means(layout, arr, stands)
    res.per_receiver = _per_receiver(layout, fit.model, all_means)
    res.moved = moved_receivers(layout, all_means, tag_height)
    if layout.zones:
        res.confusable = confusable_zones(layout, fit.model)
        res.stands = judge_stands(layout, fit.model, stand_means, corrections)
        judged = [v for v in res.stands if v.zone is not None]
        res.stand_accuracy = sum(v.correct for v in judged) / len(judged) if judged else None
    return res


LOCATE_ROUNDS = 2
LOCATE_STEP_M = 0.5
LOCATE_SIGMA_DB = 4.0
LOCATE_PRIOR_M = 1.5


def _fit(
    layout: Layout,
    stand_means: list[tuple[Stand, dict[int, float]]],
    tag_height: float,
    ridge: float,
    sensitivity: float,
) -> tuple[PathLossFit, int]:
    rx_i, d_all, rssi_all, heights, shelf_all = [], [], [], [], []
    used = 0
    for s, means in stand_means:
        pos = stand_position(layout, s)
        if pos is None:
            continue
        used += 1
        h = s.z if s.z is not None else tag_height
        px, py = np.array([pos[0]]), np.array([pos[1]])
        d = distances(layout, px, py, h)[0]
        sm = shelf_metres(layout, px, py, h)[0]
        for i, m in means.items():
            rx_i.append(i)
            d_all.append(d[i])
            shelf_all.append(sm[i])
            rssi_all.append(m)
            heights.append(h)
    if used < 2 or len(rssi_all) < 3:
        raise CalibrationError(
            f"too little calibration data: {used} usable stands with {len(rssi_all)} receiver means "
            "(need the reference beacon heard by the receivers during at least 2 labelled stands)"
        )
    fit = fit_path_loss(
        np.array(rx_i, dtype=np.int64),
        np.array(d_all),
        np.array(rssi_all),
        layout.receiver_ids,
        ridge=ridge,
        tag_height=float(np.median(heights)),
        sensitivity_dbm=sensitivity,
        shelf_m=np.array(shelf_all) if layout.shelves else None,
    )
    return fit, used


def _locate_stands(
    layout: Layout,
    model: RadioModel,
    stand_means: list[tuple[Stand, dict[int, float]]],
    tag_height: float,
) -> list[tuple[Stand, dict[int, float]]]:
    """Stands labelled with a zone but no spot, placed at the point of their zone (a 0.5 m
    grid, shelves excluded) whose predicted levels best match the stand's means."""
    zones = {z.id: z for z in layout.zones}
    out: list[tuple[Stand, dict[int, float]]] = []
    for s, means in stand_means:
        zone = zones.get(s.zone) if s.zone is not None else None
        if zone is None or (s.x is not None and s.y is not None) or len(means) < 3:
            out.append((s, means))
            continue
        pts = np.asarray(zone.polygon, dtype=float)
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        gx, gy = np.meshgrid(
            np.arange(x0 + LOCATE_STEP_M / 2, x1, LOCATE_STEP_M),
            np.arange(y0 + LOCATE_STEP_M / 2, y1, LOCATE_STEP_M),
        )
        xs, ys = gx.ravel(), gy.ravel()
        ok = points_in_polygon(xs, ys, zone.polygon)
        if layout.shelves:
            ok &= ~layout.on_shelf(xs, ys)
        xs, ys = xs[ok], ys[ok]
        if len(xs) == 0:
            out.append((s, means))
            continue
        idx = np.array(list(means), dtype=np.int64)
        lv = np.array(list(means.values()))
        pred = predicted_rssi(model, layout, xs, ys)[:, idx]
        cx, cy = zone.centroid
        # a Gaussian prior around the centroid (the technician stands somewhere central)
        err = ((pred - lv[None, :]) ** 2).sum(axis=1) / LOCATE_SIGMA_DB**2 + (
            (xs - cx) ** 2 + (ys - cy) ** 2
        ) / LOCATE_PRIOR_M**2
        k = int(np.argmin(err))
        out.append((dataclasses.replace(s, x=float(xs[k]), y=float(ys[k])), means))
    return out


def _check_zones(layout: Layout, stands: list[Stand]) -> None:
    known = {z.id for z in layout.zones}
    unknown = sorted({s.zone for s in stands if s.zone is not None and s.zone not in known})
    if unknown:
        raise CalibrationError(
            f"the labels name zones the layout {layout.store_id} does not have: "
            f"{', '.join(unknown)} (its zones: {', '.join(sorted(known)) or 'none'})"
        )


def _stand_means(
    layout: Layout, arr: FloatArray, stands: list[Stand]
) -> list[tuple[Stand, dict[int, float]]]:
    """Per stand, the mean RSSI of every receiver that heard the beacon during it at least
    MIN_SAMPLES_PER_STAND times (see there why no rarer receiver is left out)."""
    n_rx = len(layout.receivers)
    ts = arr[:, 2]
    out: list[tuple[Stand, dict[int, float]]] = []
    for s in stands:
        a, b = np.searchsorted(ts, s.start), np.searchsorted(ts, s.end, side="right")
        seg = arr[a:b]
        counts = (
            np.bincount(seg[:, 0].astype(np.int64), minlength=n_rx) if len(seg) else np.zeros(n_rx)
        )
        means: dict[int, float] = {}
        for i in range(n_rx):
            if counts[i] >= MIN_SAMPLES_PER_STAND:
                means[i] = float(seg[seg[:, 0] == i, 1].mean())
        if means:
            out.append((s, means))
    return out


Correction = tuple[float, float, dict[str, float]]


def _corrections(
    layout: Layout, model: RadioModel, stand_means: list[tuple[Stand, dict[int, float]]]
) -> list[tuple[int, Correction]]:
    """(index into stand_means, the measured deviation from the path-loss curve at the stand)."""
    out: list[tuple[int, Correction]] = []
    for k, (s, means) in enumerate(stand_means):
        pos = stand_position(layout, s)
        if pos is None:
            continue
        pred = predicted_rssi(model, layout, np.array([pos[0]]), np.array([pos[1]]))[0]
        res = {layout.receivers[i].id: m - float(pred[i]) for i, m in means.items()}
        out.append((k, (pos[0], pos[1], res)))
    return out


def _per_receiver(
    layout: Layout, model: RadioModel, stand_means: list[tuple[Stand, dict[int, float]]]
) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(layout.receivers):
        rm = model.for_receiver(r.id)
        heard = sum(i in means for _, means in stand_means)
        out.append(
            {
                "id": r.id,
                "samples": rm.samples,
                "offset_db": round(rm.offset_db, 2),
                "exponent": round(rm.exponent, 3),
                "residual_db": round(rm.sigma_db, 2) if rm.samples else None,
                "heard_share": round(heard / max(len(stand_means), 1), 3),
            }
        )
    return out


def judge_stands(
    layout: Layout,
    model: RadioModel,
    stand_means: list[tuple[Stand, dict[int, float]]],
    corrections: list[tuple[int, Correction]],
) -> list[StandVerdict]:
    """Each stand classified by the model fitted without that stand's own measured deviation
    (leave one out: a stand always agrees with a model that memorised it)."""
    out: list[StandVerdict] = []
    for k, (s, means) in enumerate(stand_means):
        if s.zone is None and s.x is None:
            continue
        others = tuple(c for j, c in corrections if j != k)
        clf = ZoneClassifier(layout, dataclasses.replace(model, corrections=others))
        ll = clf.log_likelihood(list(means), list(means.values()))
        post = np.exp(ll - ll.max())
        post /= post.sum()
        best = int(np.argmax(ll))
        p_true = float(post[clf.zone_ids.index(s.zone)]) if s.zone in clf.zone_ids else 0.0
        out.append(StandVerdict(s.zone, s.start, s.end, clf.zone_ids[best], round(p_true, 3)))
    return out


def moved_receivers(
    layout: Layout, stand_means: list[tuple[Stand, dict[int, float]]], tag_height: float
) -> list[MovedReceiver]:
    """Receivers whose stand levels fit the distance law much better from somewhere else."""
    out: list[MovedReceiver] = []
    for i, r in enumerate(layout.receivers):
        spots, means = [], []
        for s, m in stand_means:
            pos = stand_position(layout, s)
            if pos is not None and i in m:
                spots.append((pos[0], pos[1], s.z if s.z is not None else tag_height))
                means.append(m[i])
        best = locate_receiver(layout, r.z, spots, means)
        if best is None:
            continue
        bx, by, err_best = best
        err_here = fit_error_at(r.x, r.y, r.z, spots, means)
        dist = math.hypot(bx - r.x, by - r.y)
        if dist >= MOVED_MIN_M and err_here > 1.8 * err_best and err_here - err_best > 2.5:
            out.append(MovedReceiver(r.id, bx, by, dist, err_here, err_best))
    return out


def confusable_zones(
    layout: Layout, model: RadioModel, threshold: float = 2.0
) -> list[dict[str, Any]]:
    """Pairs of zones whose predicted RSSI patterns (at their centroids, offset removed) differ
    by less than `threshold` measurement standard deviations."""
    cx = np.array([z.centroid[0] for z in layout.zones])
    cy = np.array([z.centroid[1] for z in layout.zones])
    pred = predicted_rssi(model, layout, cx, cy)
    sig = np.array([max(model.for_receiver(r.id).sigma_db, 3.0) for r in layout.receivers])
    heard = pred > model.sensitivity_dbm + 5.0
    out: list[dict[str, Any]] = []
    for i in range(len(layout.zones)):
        for j in range(i + 1, len(layout.zones)):
            m = heard[i] | heard[j]
            if not m.any():
                sep = 0.0
            else:
                diff = (pred[i, m] - pred[j, m]) / sig[m]
                diff = diff - diff.mean() if m.sum() > 1 else diff
                sep = float(math.sqrt(float((diff * diff).sum())))
            if sep < threshold:
                out.append(
                    {"a": layout.zones[i].id, "b": layout.zones[j].id, "separation": round(sep, 2)}
                )
    out.sort(key=lambda c: float(c["separation"]))
    return out
