"""Log-distance path loss per receiver, with a loss through declared shelves, and its fit.

    rssi = offset_r - 10 * exponent_r * log10(d / 1 m) - shelf_db_per_m * s + noise(sigma_r)

offset_r absorbs the receiver's gain (receivers differ by several dB), exponent_r how fast the
signal falls with distance where that receiver hangs. `s` is the length of the straight path
that runs through the layout's declared shelves below their top (goods absorb 2.4 GHz: a
multi-wall model in the manner of Motley-Keenan, with one loss per metre of goods instead of
per wall); the shared `shelf_db_per_m` is fitted from the calibration walk (0 where the
layout declares no shelves or the walk shows no loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .layout import TAG_HEIGHT, FloatArray, Layout

MIN_DISTANCE = 0.5
# assumed top of the declared shelving (a common gondola height; a layout does not say): a path
# from a tag is below it for the first part of its length, where goods can absorb
SHELF_TOP_M = 2.0


@dataclass(frozen=True, slots=True)
class ReceiverModel:
    offset_db: float = -61.0
    exponent: float = 2.0
    sigma_db: float = 5.0
    samples: int = 0


@dataclass(frozen=True, slots=True)
class RadioModel:
    """Everything the classifier needs to predict RSSI at a floor position."""

    receivers: dict[str, ReceiverModel] = field(default_factory=dict)
    default: ReceiverModel = ReceiverModel()
    tag_height: float = TAG_HEIGHT
    sensitivity_dbm: float = -95.0
    device_sigma_db: float = 4.0  # spread of phones' transmit power around the reference
    # measured deviations from the path-loss curve at calibration stands: (x, y, {rx: dB}).
    # Shadowing is spatially correlated, so the deviation measured at a spot holds nearby too.
    corrections: tuple[tuple[float, float, dict[str, float]], ...] = ()
    correction_length_m: float = 2.0
    correction_shrink: float = 0.3
    shelf_db_per_m: float = 0.0  # loss per metre of path through declared shelves (fitted)
    # the layout's fixed reference beacons as the calibration walk heard them: tag -> receiver
    # -> median dBm (the baseline of positioning.drift)
    references: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_receiver(self, rx: str) -> ReceiverModel:
        return self.receivers.get(rx, self.default)

    def to_json(self) -> dict[str, Any]:
        return {
            "tag_height": self.tag_height,
            "sensitivity_dbm": self.sensitivity_dbm,
            "device_sigma_db": self.device_sigma_db,
            "default": _rm_json(self.default),
            "receivers": {k: _rm_json(v) for k, v in self.receivers.items()},
            "correction_length_m": self.correction_length_m,
            "correction_shrink": self.correction_shrink,
            "shelf_db_per_m": round(self.shelf_db_per_m, 3),
            "corrections": [
                {
                    "x": round(x, 3),
                    "y": round(y, 3),
                    "residual_db": {k: round(v, 2) for k, v in r.items()},
                }
                for x, y, r in self.corrections
            ],
            "references": {
                tag: {k: round(v, 2) for k, v in levels.items()}
                for tag, levels in self.references.items()
            },
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> RadioModel:
        return RadioModel(
            receivers={k: ReceiverModel(**v) for k, v in obj.get("receivers", {}).items()},
            default=ReceiverModel(**obj.get("default", {})),
            tag_height=float(obj.get("tag_height", TAG_HEIGHT)),
            sensitivity_dbm=float(obj.get("sensitivity_dbm", -95.0)),
            device_sigma_db=float(obj.get("device_sigma_db", 4.0)),
            corrections=tuple(
                (
                    float(c["x"]),
                    float(c["y"]),
                    {str(k): float(v) for k, v in c["residual_db"].items()},
                )
                for c in obj.get("corrections", [])
            ),
            correction_length_m=float(obj.get("correction_length_m", 2.0)),
            correction_shrink=float(obj.get("correction_shrink", 0.3)),
            shelf_db_per_m=float(obj.get("shelf_db_per_m", 0.0)),
            references={
                str(tag): {str(k): float(v) for k, v in levels.items()}
                for tag, levels in obj.get("references", {}).items()
            },
        )


def _rm_json(m: ReceiverModel) -> dict[str, Any]:
    return {
        "offset_db": round(m.offset_db, 3),
        "exponent": round(m.exponent, 4),
        "sigma_db": round(m.sigma_db, 3),
        "samples": m.samples,
    }


def distances(layout: Layout, xs: FloatArray, ys: FloatArray, tag_height: float) -> FloatArray:
    """3-D distance (points x receivers) from floor points at tag height to each receiver."""
    rx = np.array([[r.x, r.y, r.z] for r in layout.receivers], dtype=float)
    dx = xs[:, None] - rx[None, :, 0]
    dy = ys[:, None] - rx[None, :, 1]
    dz = tag_height - rx[None, :, 2]
    d: FloatArray = np.sqrt(dx * dx + dy * dy + dz * dz)
    return np.maximum(d, MIN_DISTANCE)


def predicted_rssi(model: RadioModel, layout: Layout, xs: FloatArray, ys: FloatArray) -> FloatArray:
    d = distances(layout, xs, ys, model.tag_height)
    offs = np.array([model.for_receiver(r.id).offset_db for r in layout.receivers])
    expo = np.array([model.for_receiver(r.id).exponent for r in layout.receivers])
    out: FloatArray = offs[None, :] - 10.0 * expo[None, :] * np.log10(d)
    if model.shelf_db_per_m > 0 and layout.shelves:
        out -= model.shelf_db_per_m * shelf_metres(layout, xs, ys, model.tag_height)
    if model.corrections:
        out += shadow_correction(model, layout, xs, ys)
    return out


def shelf_metres(
    layout: Layout, xs: FloatArray, ys: FloatArray, tag_height: float, top: float = SHELF_TOP_M
) -> FloatArray:
    """Metres of the straight path from each floor point (at tag height) to each receiver that
    run through a declared shelf (its bounding box) below `top` (points x receivers)."""
    out = np.zeros((len(xs), len(layout.receivers)))
    if not layout.shelves or len(xs) == 0:
        return out
    boxes = np.array(
        [
            [min(p[0] for p in s), min(p[1] for p in s), max(p[0] for p in s), max(p[1] for p in s)]
            for s in layout.shelves
        ]
    )
    rx = np.array([[r.x, r.y, r.z] for r in layout.receivers], dtype=float)
    px, py = xs[:, None], ys[:, None]
    dx, dy = rx[None, :, 0] - px, rx[None, :, 1] - py
    dz = rx[None, :, 2] - tag_height
    length = np.sqrt(dx * dx + dy * dy + dz * dz)
    # the path is below the shelves' top for this share of its length (from the tag)
    below = np.where(dz > 0, np.clip((top - tag_height) / np.maximum(dz, 1e-9), 0.0, 1.0), 1.0)
    below = np.broadcast_to(below, length.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_dx, inv_dy = 1.0 / dx, 1.0 / dy
        for x0, y0, x1, y1 in boxes:
            lo = np.zeros(length.shape)
            hi = below.copy()
            for p, d, inv, a, b in ((px, dx, inv_dx, x0, x1), (py, dy, inv_dy, y0, y1)):
                s0, s1 = (a - p) * inv, (b - p) * inv
                par = d == 0
                inside = (p >= a) & (p <= b)
                lo = np.maximum(
                    lo, np.where(par, np.where(inside, 0.0, np.inf), np.minimum(s0, s1))
                )
                hi = np.minimum(
                    hi, np.where(par, np.where(inside, 1.0, -np.inf), np.maximum(s0, s1))
                )
            out += np.clip(hi - lo, 0.0, None) * length
    return out


def shadow_correction(
    model: RadioModel, layout: Layout, xs: FloatArray, ys: FloatArray
) -> FloatArray:
    """Measured residuals spread to nearby points with a Gaussian kernel, shrunk toward 0 where
    no stand is close (a simple kriging of the shadowing)."""
    idx = layout.receiver_index()
    n_rx = len(layout.receivers)
    cx = np.array([c[0] for c in model.corrections])
    cy = np.array([c[1] for c in model.corrections])
    res = np.zeros((len(model.corrections), n_rx))
    has = np.zeros((len(model.corrections), n_rx))
    for k, (_, _, r) in enumerate(model.corrections):
        for rid, v in r.items():
            i = idx.get(rid)
            if i is not None:
                res[k, i] = v
                has[k, i] = 1.0
    d2 = (xs[:, None] - cx[None, :]) ** 2 + (ys[:, None] - cy[None, :]) ** 2
    w = np.exp(-d2 / (2.0 * model.correction_length_m**2))  # points x stands
    num = w @ (res * has)
    den = w @ has + model.correction_shrink
    out: FloatArray = num / den
    return out


@dataclass(frozen=True, slots=True)
class PathLossFit:
    model: RadioModel
    shared_offset_db: float
    shared_exponent: float
    residual_db: float
    n: int


def fit_path_loss(
    rx_index: npt.NDArray[np.int64],
    distance: FloatArray,
    rssi: FloatArray,
    receiver_ids: tuple[str, ...],
    ridge: float = 4.0,
    min_samples: int = 3,
    tag_height: float = TAG_HEIGHT,
    sensitivity_dbm: float = -95.0,
    shelf_m: FloatArray | None = None,
    exponent_prior: float = 300.0,
) -> PathLossFit:
    """Fit per-receiver offsets and exponents, the exponents shrunk toward a shared one.

    Unknowns: offset_r for each receiver, a shared exponent n and per-receiver deviations dn_r
    with a ridge penalty (few calibration spots per receiver would otherwise give wild slopes):
    `ridge` per sample, but never less than `exponent_prior` in all, so a receiver heard at a
    handful of stands keeps close to the store's shared exponent and one heard at dozens of
    spots gets its own,
    and, given `shelf_m` (metres of each sample's path through declared shelves), one shared
    loss per metre of shelf (kept only when positive). Receivers with fewer than `min_samples`
    samples get the shared model.
    """
    n_rx = len(receiver_ids)
    m = len(rssi)
    if m < 3:
        raise ValueError("need at least 3 samples to fit path loss")
    ld = -10.0 * np.log10(np.maximum(distance, MIN_DISTANCE))
    counts = np.bincount(rx_index, minlength=n_rx)
    use_shelf = shelf_m is not None and bool((shelf_m > 0.1).sum() >= 3)
    shelf = -np.asarray(shelf_m, dtype=float) if use_shelf and shelf_m is not None else None

    def solve(with_shelf: bool) -> tuple[FloatArray, FloatArray, FloatArray]:
        extra = [shelf] if with_shelf and shelf is not None else []
        a_sh = np.column_stack([np.ones(m), ld, *extra])
        shared, *_ = np.linalg.lstsq(a_sh, rssi, rcond=None)
        cols = 2 * n_rx + 1 + len(extra)
        a = np.zeros((m + n_rx, cols))
        a[np.arange(m), rx_index] = 1.0
        a[:m, n_rx] = ld
        a[np.arange(m), n_rx + 1 + rx_index] = ld
        if extra:
            a[:m, -1] = extra[0]
        b = np.concatenate([rssi, np.zeros(n_rx)])
        a[m + np.arange(n_rx), n_rx + 1 + np.arange(n_rx)] = np.sqrt(
            np.maximum(ridge * np.maximum(counts, 1), exponent_prior)
        )
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        return shared, sol, rssi - a[:m] @ sol

    shared, sol, resid = solve(True)
    shelf_db = float(sol[-1]) if shelf is not None else 0.0
    if shelf is not None and (shelf_db <= 0 or shared[-1] <= 0):
        shared, sol, resid = solve(False)
        shelf_db = 0.0
    shared_off, shared_n = float(shared[0]), float(shared[1])

    models: dict[str, ReceiverModel] = {}
    for i, rid in enumerate(receiver_ids):
        sel = rx_index == i
        k = int(counts[i])
        if k < min_samples:
            continue
        sig = float(np.sqrt(np.mean(resid[sel] ** 2))) if k else 5.0
        models[rid] = ReceiverModel(
            offset_db=float(sol[i]),
            exponent=float(sol[n_rx] + sol[n_rx + 1 + i]),
            sigma_db=max(sig, 1.0),
            samples=k,
        )
    overall = float(np.sqrt(np.mean(resid**2)))
    default = ReceiverModel(shared_off, shared_n, max(overall, 1.0), 0)
    return PathLossFit(
        model=RadioModel(
            models,
            default,
            tag_height=tag_height,
            sensitivity_dbm=sensitivity_dbm,
            shelf_db_per_m=shelf_db,
        ),
        shared_offset_db=shared_off,
        shared_exponent=shared_n,
        residual_db=overall,
        n=m,
    )
