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

from .classifier import ClassifierParams, ZoneClassifier
from .layout import Layout
from .pathloss import PathLossFit, RadioModel, distances, fit_path_loss, predicted_rssi

MIN_SAMPLES_PER_STAND = 3
MIN_RECEPTION_SHARE = 0.6


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
                "samples": self.fit.n,
                "stands_used": self.stands_used,
                "stands_total": self.stands_total,
                "stand_accuracy": self.stand_accuracy,
            },
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
        for r in self.per_receiver:
            verdict = (
                "good" if r["residual_db"] <= 4.0 else "fair" if r["residual_db"] <= 6.0 else "poor"
            )
            if r["samples"] == 0:
                lines.append(
                    f"  {r['id']}: never heard the reference beacon, check it is powered and placed as in the layout."
                )
                continue
            lines.append(
                f"  {r['id']}: {r['samples']} samples, offset {r['offset_db']:.1f} dBm at 1 m, "
                f"exponent {r['exponent']:.2f}, error {r['residual_db']:.1f} dB ({verdict})"
            )
        if self.stand_accuracy is not None:
            lines.append(
                f"Stands classified into their labelled zone: {100 * self.stand_accuracy:.0f}%."
            )
        if self.stand_accuracy is None:
            lines.append("The layout has no zones, so zone separation was not judged.")
        elif self.confusable:
            lines.append(
                "Zones that are hard to tell apart (add a receiver between them or merge them):"
            )
            for c in self.confusable:
                lines.append(
                    f"  {c['a']} / {c['b']}: separation {c['separation']:.1f} (below 2 is hard)"
                )
        else:
            lines.append("Every pair of zones is well separated by the fitted model.")
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
    """`sightings`: (receiver index, rssi, t) of the reference beacon, in any order."""
    n_rx = len(layout.receivers)
    arr = np.array(list(sightings), dtype=float).reshape(-1, 3)
    order = np.argsort(arr[:, 2], kind="stable")
    arr = arr[order]
    ts = arr[:, 2]
    rx_i, d_all, rssi_all, heights = [], [], [], []
    used = 0
    stand_means: list[tuple[Stand, dict[int, float]]] = []
    for s in stands:
        pos = stand_position(layout, s)
        a, b = np.searchsorted(ts, s.start), np.searchsorted(ts, s.end, side="right")
        seg = arr[a:b]
        means: dict[int, float] = {}
        counts = (
            np.bincount(seg[:, 0].astype(np.int64), minlength=n_rx) if len(seg) else np.zeros(n_rx)
        )
        for i in range(n_rx):
            # a receiver that heard less than half as often as the best one is near its
            # sensitivity: only the luckiest advertisements got through and its mean is biased
            # high, so it does not go into the fit
            if counts[i] >= max(MIN_SAMPLES_PER_STAND, MIN_RECEPTION_SHARE * counts.max()):
                means[i] = float(seg[seg[:, 0] == i, 1].mean())
        if not means:
            continue
        stand_means.append((s, means))
        if pos is None:
            continue
        used += 1
        h = s.z if s.z is not None else tag_height
        d = distances(layout, np.array([pos[0]]), np.array([pos[1]]), h)[0]
        for i, m in means.items():
            rx_i.append(i)
            d_all.append(d[i])
            rssi_all.append(m)
            heights.append(h)
    if used < 2 or len(rssi_all) < 3:
        raise ValueError(
            f"too little calibration data: {used} usable stands with {len(rssi_all)} receiver means "
            "(need the reference beacon heard by the receivers during at least 2 labelled stands)"
        )
    rssi_np = np.array(rssi_all)
    fit = fit_path_loss(
        np.array(rx_i, dtype=np.int64),
        np.array(d_all),
        rssi_np,
        layout.receiver_ids,
        ridge=ridge,
        tag_height=float(np.median(heights)),
        sensitivity_dbm=min(-90.0, float(np.percentile(arr[:, 1], 0.5)) - 1.0),
    )
    corrections = []
    for s, means in stand_means:
        pos = stand_position(layout, s)
        if pos is None:
            continue
        pred = predicted_rssi(fit.model, layout, np.array([pos[0]]), np.array([pos[1]]))[0]
        corrections.append(
            (pos[0], pos[1], {layout.receivers[i].id: m - float(pred[i]) for i, m in means.items()})
        )
    fit = dataclasses.replace(
        fit, model=dataclasses.replace(fit.model, corrections=tuple(corrections))
    )
    res = CalibrationResult(fit, used, len(stands))
    for r in layout.receivers:
        rm = fit.model.for_receiver(r.id)
        res.per_receiver.append(
            {
                "id": r.id,
                "samples": rm.samples,
                "offset_db": round(rm.offset_db, 2),
                "exponent": round(rm.exponent, 3),
                "residual_db": round(rm.sigma_db, 2) if rm.samples else None,
            }
        )
    if layout.zones:
        res.confusable = confusable_zones(layout, fit.model)
        clf = ZoneClassifier(layout, fit.model, ClassifierParams())
        hits = total = 0
        for s, means in stand_means:
            if s.zone is None and (s.x is None):
                continue
            ll = clf.log_likelihood(list(means), list(means.values()))
            total += 1
            hits += clf.zone_ids[int(np.argmax(ll))] == s.zone
        res.stand_accuracy = hits / total if total else None
    return res


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
