"""Fixed reference beacons: how far each receiver's levels have moved since the calibration.

A reference is a beacon that never moves: on a pillar, or built into a receiver (networked
receivers advertise too, so receivers hear each other). The calibration walk records its typical
level at every receiver with the radio model (`RadioModel.references`). Live, each (reference,
receiver) keeps the robust means of `BIN_S` bins over the last `WINDOW_S`; their median, against the
calibration's, is that pair's shift. A receiver whose references moved together has changed, not
the shoppers: a pallet put in front of it, shelves restocked, a knock that turned it, a firmware
update with another gain. Its input is corrected by the median shift of its references, which is
the same as moving its offset in the model, without a refit and at no cost per decision.

Rules (documented in the README, "Reference beacons and drift"):
- a pair counts with at least `MIN_BINS` bins of `MIN_PER_BIN` sightings in the window;
- a receiver's shift is the median over its counted pairs; the correction applied is that shift
  when it is at least `DEADBAND_DB`, else 0, and never more than `MAX_SHIFT_DB`;
- beyond `ALERT_DB` the receiver is reported as moved or blocked (compensated all the same);
- a receiver that heard references at calibration and none of them in the window, while others
  still hear them, is reported as no longer hearing them (dead, moved or covered);
- without a calibration that recorded the references (an older calibration file, or none), the
  first full window after the start is the baseline: drift is then measured from that moment.

Sightings of references are taken out of the input here and never reach zone decisions or dwell.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .kalman import FloatArray, IntArray
from .layout import Layout
from .pathloss import RadioModel
from .types import TagId

BIN_S = 10.0
WINDOW_S = 300.0  # a change is taken once it fills half of it: 2.5 minutes
UPDATE_S = 60.0
MIN_PER_BIN = 3
MIN_BINS = 12  # two minutes of a beacon heard in most 10 s bins
DEADBAND_DB = 1.0
MAX_SHIFT_DB = 15.0
ALERT_DB = 6.0


@dataclass(frozen=True, slots=True)
class ReceiverDrift:
    receiver: str
    shift_db: float | None  # median over its references of (now - calibration); None: unknown
    applied_db: float  # the correction in use (subtracted from what it hears)
    references: int  # references it hears well enough to count
    missing: tuple[str, ...]  # references it heard at calibration and hears no more

    def as_json(self) -> dict[str, object]:
        return {
            "shift_db": None if self.shift_db is None else round(self.shift_db, 2),
            "applied_db": round(self.applied_db, 2),
            "references": self.references,
            "missing": list(self.missing),
        }

    @property
    def alert(self) -> str | None:
        """A sentence for the installer, or None while the receiver is as calibrated."""
        if self.missing and self.references == 0:
            return (
                f"receiver {self.receiver} no longer hears the reference beacons it heard at "
                f"calibration ({', '.join(self.missing)}): dead, moved or covered?"
            )
        if self.shift_db is not None and abs(self.shift_db) >= ALERT_DB:
            way = "stronger" if self.shift_db > 0 else "weaker"
            return (
                f"receiver {self.receiver} hears the reference beacons {abs(self.shift_db):.0f} dB "
                f"{way} than at calibration: moved, turned or blocked? (compensated; "
                "recalibrate if it stays)"
            )
        return None


def robust_mean(values: Sequence[float]) -> float:
    """The mean of the middle half: RSSI comes in whole dB, so a median moves in steps of 1 dB,
    and a shopper's body between beacon and receiver is an outlier the mean should not take."""
    v = sorted(values)
    q = len(v) // 4
    mid = v[q : len(v) - q] or v
    return sum(mid) / len(mid)


class _Pair:
    """One (reference, receiver): robust means of the last window's bins."""

    __slots__ = ("bin_start", "bin_values", "bins")

    def __init__(self) -> None:
        self.bins: deque[tuple[float, float]] = deque()  # (bin start, the bin's robust mean)
        self.bin_start = -1.0
        self.bin_values: list[float] = []

    def add(self, t: float, rssi: float) -> None:
        if t >= self.bin_start + BIN_S:
            self.close()
            self.bin_start = t - t % BIN_S
        self.bin_values.append(rssi)

    def close(self) -> None:
        if len(self.bin_values) >= MIN_PER_BIN:
            self.bins.append((self.bin_start, robust_mean(self.bin_values)))
        self.bin_values = []

    def level(self, now: float) -> float | None:
        while self.bins and self.bins[0][0] < now - WINDOW_S:
            self.bins.popleft()
        if len(self.bins) < MIN_BINS:
            return None
        return statistics.median(v for _, v in self.bins)


class DriftMonitor:
    """Takes the references' sightings out of the input and corrects the receivers that moved."""

    def __init__(self, layout: Layout, model: RadioModel, compensate: bool = True) -> None:
        self.layout = layout
        self.compensate = compensate  # False: measure and report only
        self.refs = frozenset(r.tag for r in layout.references)
        self._rx_ids = layout.receiver_ids
        idx = layout.receiver_index()
        # a receiver does not hear the beacon built into it (and would say nothing if it did)
        self._own = {r.tag: idx[r.receiver] for r in layout.references if r.receiver in idx}
        # tag -> receiver index -> level at calibration
        self.baseline: dict[str, dict[int, float]] = {
            tag: {idx[k]: v for k, v in levels.items() if k in idx}
            for tag, levels in model.references.items()
            if tag in self.refs
        }
        self._pairs: dict[tuple[str, int], _Pair] = {}
        self.correction: FloatArray = np.zeros(len(self._rx_ids))
        self._corrects = False
        self._first_t: float | None = None
        self._next_update = float("-inf")
        self._report: list[ReceiverDrift] = []

    @staticmethod
    def for_layout(layout: Layout, model: RadioModel) -> DriftMonitor | None:
        return DriftMonitor(layout, model) if layout.references else None

    def take(
        self, tags: Sequence[TagId], rx: IntArray, rssi: FloatArray, t: FloatArray
    ) -> tuple[Sequence[TagId], IntArray, FloatArray, FloatArray]:
        """The sightings that are not references', corrected for the receivers' drift."""
        if not self.refs.isdisjoint(tags):
            refs = self.refs
            is_ref = np.fromiter((tg in refs for tg in tags), dtype=bool, count=len(tags))
            for k in np.flatnonzero(is_ref).tolist():
                self._add(tags[k], int(rx[k]), float(rssi[k]), float(t[k]))
            keep = ~is_ref
            tags = [tg for tg, ok in zip(tags, keep.tolist(), strict=True) if ok]
            rx, rssi, t = rx[keep], rssi[keep], t[keep]
        if self._corrects and len(rx):
            rssi = rssi - self.correction[rx]
        return tags, rx, rssi, t

    def _add(self, tag: str, rx: int, rssi: float, t: float) -> None:
        if self._own.get(tag) == rx:
            return
        if self._first_t is None:
            self._first_t = t
        pair = self._pairs.get((tag, rx))
        if pair is None:
            pair = self._pairs[(tag, rx)] = _Pair()
        pair.add(t, rssi)

    def tick(self, t: float) -> None:
        if t < self._next_update:
            return
        self._next_update = t + UPDATE_S
        levels: dict[tuple[str, int], float] = {}
        for key, pair in self._pairs.items():
            if t >= pair.bin_start + BIN_S:
                pair.close()
            lv = pair.level(t)
            if lv is not None:
                levels[key] = lv
        if not self.baseline:  # none recorded: the first full window is the baseline
            if self._first_t is None or t - self._first_t < WINDOW_S or not levels:
                return
            for (tag, i), lv in levels.items():
                self.baseline.setdefault(tag, {})[i] = lv
        heard_now = {tag for tag, _ in levels}
        report = []
        for i, rid in enumerate(self._rx_ids):
            shifts = [
                lv - self.baseline[tag][i]
                for (tag, j), lv in levels.items()
                if j == i and i in self.baseline.get(tag, {})
            ]
            missing = tuple(
                sorted(
                    tag
                    for tag, base in self.baseline.items()
                    if i in base and tag in heard_now and (tag, i) not in levels
                )
            )
            shift = float(np.median(shifts)) if shifts else None
            if shift is not None:
                applied = 0.0 if abs(shift) < DEADBAND_DB else shift
                self.correction[i] = float(np.clip(applied, -MAX_SHIFT_DB, MAX_SHIFT_DB))
            report.append(
                ReceiverDrift(rid, shift, float(self.correction[i]), len(shifts), missing)
            )
        self._corrects = self.compensate and bool(self.correction.any())
        self._report = report

    def report(self) -> list[ReceiverDrift]:
        """Per receiver, as of the last update (empty until a baseline and a window exist)."""
        return list(self._report)


def reference_levels(
    layout: Layout, sightings: Sequence[tuple[str, int, float]]
) -> dict[str, dict[str, float]]:
    """The baseline a calibration records: per reference tag and receiver, the robust mean of
    what the walk's trace heard (pairs with fewer than MIN_BINS * MIN_PER_BIN sightings left out).
    `sightings` are (tag, receiver index, rssi)."""
    per: dict[tuple[str, int], list[float]] = {}
    for tag, i, rssi in sightings:
        per.setdefault((tag, i), []).append(rssi)
    out: dict[str, dict[str, float]] = {}
    for (tag, i), values in sorted(per.items()):
        if len(values) >= MIN_BINS * MIN_PER_BIN:
            out.setdefault(tag, {})[layout.receivers[i].id] = robust_mean(values)
    return out
