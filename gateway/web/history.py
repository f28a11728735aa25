"""What the web app remembers of live input (the pipeline's `LiveTap`): advertisements per
receiver, and for tag detail the recent sightings (raw and filtered RSSI) and zone probabilities
of every tag, in fixed-size rings of arrays: memory is bounded whatever the store's traffic (a
quiet store keeps many minutes, a busy one fewer).

Times are on the pipeline's input clock (monotonic for live input). A tag is keyed by a 64-bit
hash of its id; nothing here leaves the process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.advertisement import Reading
from gateway.pipeline import Pipeline
from gateway.services.receivers import ReceiverHealth

RSSI_ROWS = 1 << 18  # 22 bytes a row: 5.8 MB
PROB_ROWS = 1 << 16  # 12 + 2 bytes per zone a row: 2.5 MB for 13 zones
FloatArray = npt.NDArray[np.float64]


class Ring:
    """The last `rows` rows of a few same-length columns."""

    def __init__(self, rows: int, columns: dict[str, tuple[npt.DTypeLike, int]]) -> None:
        self.rows = rows
        self.cols = {
            k: np.zeros((rows, w) if w > 1 else rows, dtype=dt) for k, (dt, w) in columns.items()
        }
        self.n = 0  # rows ever written

    def append(self, **values: npt.ArrayLike) -> None:
        first = np.asarray(next(iter(values.values())))
        k = len(first)
        if k == 0:
            return
        if k > self.rows:  # more than fits: only the newest rows
            values = {c: np.asarray(v)[-self.rows :] for c, v in values.items()}
            self.n += k - self.rows
            k = self.rows
        idx = (self.n + np.arange(k)) % self.rows
        for c, v in values.items():
            self.cols[c][idx] = v
        self.n += k

    def select(self, column: str, value: int) -> npt.NDArray[np.int64]:
        """Row indices where `column == value`, oldest first."""
        filled = min(self.n, self.rows)
        start = self.n % self.rows if self.n > self.rows else 0
        order: npt.NDArray[np.int64] = (start + np.arange(filled)) % self.rows
        found: npt.NDArray[np.int64] = order[np.asarray(self.cols[column][order] == value)]
        return found


@dataclass(frozen=True, slots=True)
class TagHistory:
    rssi: dict[int, tuple[FloatArray, FloatArray, FloatArray]]  # rx index -> (t, raw, filtered)
    prob_t: FloatArray
    probs: FloatArray  # rows of zone probabilities (pipeline.zone_classes order)


def tag_keys(tags: Sequence[str]) -> npt.NDArray[np.int32]:
    """Tags' keys in the rings: the low 32 bits of their hash (computed in C; a collision between
    two tracked tags, about 1 in 10,000 for 500 tags, would only mix their plots)."""
    return np.fromiter(map(hash, tags), dtype=np.int64, count=len(tags)).astype(np.int32)


class LiveRecorder:
    def __init__(
        self, pipeline: Pipeline, rssi_rows: int = RSSI_ROWS, health: ReceiverHealth | None = None
    ) -> None:
        self._pipeline = pipeline
        self.health = health or ReceiverHealth(pipeline.tracker.rx_index, 0.0)
        self.also: Callable[[Sequence[Reading]], None] | None = (
            None  # a calibration walk's recorder
        )
        self.rssi = Ring(
            rssi_rows,
            {"key": (np.int32, 1), "rx": (np.int16, 1), "raw": (np.float32, 1),
             "filt": (np.float32, 1), "t": (np.float64, 1)},
        )  # fmt: skip
        n_cls = len(pipeline.zone_classes)
        self.probs = Ring(
            PROB_ROWS, {"key": (np.int32, 1), "t": (np.float64, 1), "p": (np.float16, n_cls)}
        )

    # ------------------------------------------------------------------ LiveTap
    @property
    def adverts(self) -> npt.NDArray[np.int64]:
        return self.health.adverts

    @property
    def last_heard(self) -> FloatArray:
        return self.health.last_heard

    def readings(self, batch: Sequence[Reading]) -> None:
        """Receiver health (counted there, always on), and a calibration walk's recorder."""
        self.health.readings(batch)
        if self.also is not None and batch:
            self.also(batch)

    def sightings(
        self, tags: Sequence[str], rx: Sequence[int], rssi: Sequence[float], t: Sequence[float]
    ) -> None:
        """Filtered levels as they stand after the batch (a batch is a fraction of a second)."""
        rxa = np.asarray(rx, dtype=np.int64)
        keys = tag_keys(tags)
        filt = self._pipeline.levels(tags, rxa)
        self.rssi.append(key=keys, rx=rxa, raw=rssi, filt=filt, t=t)

    # ------------------------------------------------------------------ sampling
    def sample_probs(self, keys: npt.NDArray[np.int32], t: float, probs: FloatArray) -> None:
        """One row of zone probabilities per tag at time `t` (the web service's tick)."""
        self.probs.append(key=keys, t=np.full(len(keys), t), p=probs)

    def history(self, tag: str, since: float) -> TagHistory:
        key = int(tag_keys([tag])[0])
        c = self.rssi.cols
        rows = self.rssi.select("key", key)
        rows = rows[c["t"][rows] >= since]
        out: dict[int, tuple[FloatArray, FloatArray, FloatArray]] = {}
        rx = c["rx"][rows]
        for i in np.unique(rx).tolist():
            r = rows[rx == i]
            out[int(i)] = (
                c["t"][r].astype(float),
                c["raw"][r].astype(float),
                c["filt"][r].astype(float),
            )
        p = self.probs.cols
        prow = self.probs.select("key", key)
        prow = prow[p["t"][prow] >= since]
        return TagHistory(out, p["t"][prow].astype(float), p["p"][prow].astype(float))
