"""Judging a calibration walk: stands the fitted model misclassifies, receivers that look dead or
moved, advice per receiver and one overall verdict. `calibration.calibrate` collects the facts;
this module turns them into a report that agrees with itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import FloatArray, Layout
from .pathloss import MIN_DISTANCE

GOOD_STAND_SHARE = 0.85  # below this the walk is not good enough, whatever the separations say
MOVED_MIN_M = 5.0
MIN_STANDS_FOR_POSITION = 5


@dataclass(frozen=True, slots=True)
class StandVerdict:
    zone: str | None
    start: float
    end: float
    decided: str | None
    probability: float  # the model's posterior of the labelled zone

    @property
    def correct(self) -> bool:
        return self.decided == self.zone


@dataclass(frozen=True, slots=True)
class MovedReceiver:
    id: str
    x: float
    y: float
    distance_m: float
    error_at_layout_db: float
    error_at_best_db: float


def locate_receiver(
    layout: Layout,
    z: float,
    stands: list[tuple[float, float, float]],
    means: list[float],
    step: float = 1.0,
) -> tuple[float, float, float] | None:
    """Where a receiver mounted at height `z` would best explain its stand means (x, y of each
    stand, the beacon's height, the mean RSSI) by the log-distance law: (x, y, rms dB), on a
    `step` grid over the floor. None with too few stands."""
    if len(means) < MIN_STANDS_FOR_POSITION:
        return None
    xmin, ymin, xmax, ymax = layout.bounds()
    gx, gy = np.meshgrid(
        np.arange(xmin, xmax + step / 2, step), np.arange(ymin, ymax + step / 2, step)
    )
    return _best_fit(_rel(stands, z), np.array(means), gx.ravel(), gy.ravel())


def fit_error_at(
    x: float, y: float, z: float, stands: list[tuple[float, float, float]], means: list[float]
) -> float:
    """rms dB of the best log-distance fit of the stand means for a receiver at (x, y, z)."""
    return _best_fit(_rel(stands, z), np.array(means), np.array([x]), np.array([y]))[2]


def _rel(stands: list[tuple[float, float, float]], z: float) -> FloatArray:
    p = np.array(stands, dtype=float).reshape(-1, 3)
    out: FloatArray = np.column_stack([p[:, 0], p[:, 1], z - p[:, 2]])
    return out


def _best_fit(
    p: FloatArray, m: FloatArray, cx: FloatArray, cy: FloatArray
) -> tuple[float, float, float]:
    """p: stands (x, y, dz to the receiver); per candidate (cx, cy) the least-squares
    m = a - 10 n log10(d), n kept in [1, 5]; returns the best candidate and its rms."""
    d = np.sqrt(
        (p[None, :, 0] - cx[:, None]) ** 2 + (p[None, :, 1] - cy[:, None]) ** 2 + p[None, :, 2] ** 2
    )
    ld = -10.0 * np.log10(np.maximum(d, MIN_DISTANCE))
    lm = ld.mean(axis=1, keepdims=True)
    mm = m.mean()
    var = ((ld - lm) ** 2).sum(axis=1)
    n = np.clip(((ld - lm) * (m - mm)[None, :]).sum(axis=1) / np.maximum(var, 1e-9), 1.0, 5.0)
    a = mm - n * lm[:, 0]
    rms = np.sqrt((((a[:, None] + n[:, None] * ld) - m[None, :]) ** 2).mean(axis=1))
    k = int(rms.argmin())
    return float(cx[k]), float(cy[k]), float(rms[k])


def receiver_advice(
    r: dict[str, object], moved: dict[str, MovedReceiver], heard_share: float
) -> str:
    """One line of advice for a receiver's entry of `CalibrationResult.per_receiver`."""
    rid = str(r["id"])
    if r["heard_share"] == 0:
        return (
            f"  {rid}: never heard the reference beacon during a stand: check it is powered, "
            "connected and placed as in the layout (until then the gateway decides without it)."
        )
    res = r["residual_db"]
    err = float(res) if isinstance(res, (int, float)) else 0.0
    if r["samples"] == 0:
        return (
            f"  {rid}: heard the reference beacon only faintly (at {100 * heard_share:.0f}% of "
            "the stands, never reliably): not fitted, the gateway uses the shared model for it; "
            "if zones are near it, check its antenna and placement."
        )
    head = (
        f"  {rid}: {r['samples']} samples, offset {r['offset_db']:.1f} dBm at 1 m, "
        f"exponent {r['exponent']:.2f}, error {err:.1f} dB"
    )
    if rid in moved:
        m = moved[rid]
        return (
            f"{head}: LOOKS MOVED: its levels fit a receiver at ({m.x:.0f}, {m.y:.0f}), "
            f"{m.distance_m:.0f} m from the layout's position ({m.error_at_best_db:.1f} dB there "
            f"against {m.error_at_layout_db:.1f} dB): check where it hangs, fix the layout or the "
            "receiver, and calibrate again."
        )
    if heard_share < 0.3:
        return f"{head}: heard at only {100 * heard_share:.0f}% of the stands: fine if it is far from most zones, else check its antenna."
    if err <= 4.0:
        return f"{head}: good."
    if err <= 6.0:
        return f"{head}: fair: stand a second time in the zones around it to pin it down."
    return (
        f"{head}: poor: its levels do not follow distance (metal shelving, a wall or a wrong "
        "position in the layout): check the position, then re-walk the zones around it."
    )


def verdict_lines(
    stands: list[StandVerdict],
    confusable: list[dict[str, object]],
    unheard: list[str],
    moved: list[str],
) -> list[str]:
    """The stands' verdict, the separations (never "well separated" beside misclassified stands)
    and the overall verdict."""
    judged = [s for s in stands if s.zone is not None]
    wrong = [s for s in judged if not s.correct]
    out: list[str] = []
    share = 1.0 - len(wrong) / len(judged) if judged else None
    if share is not None:
        out.append(
            f"Zone stands classified into their labelled zone: {len(judged) - len(wrong)} of "
            f"{len(judged)} ({100 * share:.0f}%)."
        )
    t0 = min((s.start for s in stands), default=0.0)
    for s in wrong:
        out.append(
            f"  misclassified: the stand in {s.zone} ({_mmss(s.start - t0)}-{_mmss(s.end - t0)} "
            f"into the walk) was decided as "
            f"{s.decided or 'no zone'} (p = {s.probability:.2f} for {s.zone})"
        )
    if confusable:
        out.append(
            "Zones the fitted model predicts alike (add a receiver between them or merge them):"
        )
        for c in confusable:
            out.append(f"  {c['a']} / {c['b']}: separation {c['separation']} (below 2 is hard)")
    elif share is not None and share >= GOOD_STAND_SHARE:
        out.append(
            "The fitted model predicts every pair of zones apart"
            + (
                ", and every stand agrees."
                if not wrong
                else "; the stands above are the exceptions."
            )
        )
    elif share is not None:
        out.append(
            "The fitted model predicts every pair of zones apart, but the stands above disagree "
            "with it: the radio there is not what a distance law predicts."
        )
    redo = sorted(
        {str(s.zone) for s in wrong}
        | {str(c["a"]) for c in confusable}
        | {str(c["b"]) for c in confusable}
    )
    fix = unheard + moved
    if share is None:
        out.append("Verdict: no zone stands, so zones cannot be judged; walk one stand per zone.")
    elif share >= GOOD_STAND_SHARE and not fix:
        tail = f" (re-walking {', '.join(redo)} would still help)" if redo else ""
        out.append(f"Verdict: good enough{tail}.")
    else:
        parts = []
        if fix:
            parts.append(f"fix receivers {', '.join(fix)} (see above)")
        if redo:
            parts.append(f"redo these zones: {', '.join(redo)}")
        out.append("Verdict: not good enough: " + "; then ".join(parts) + ".")
    return out


def _mmss(s: float) -> str:
    return f"{int(s // 60)}:{int(s % 60):02d}"
