"""Receiver health, always on (not only with the web app): advertisements heard per receiver,
when each was last heard, its rate, and a state in one word. The retained status message, the
web app's `/api/v1/state` and `/metrics`, and `shelfgate diagnose` all read it from here.

It is the pipeline's live tap when the web app is off (the web app's recorder forwards its
readings here when on). Times are on the pipeline's input clock (monotonic for live input).
A source with its own per-receiver figures (networked receivers: late, dropped) adds them to
a receiver's object in `report()` through `extra`.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.advertisement import Reading

RATE_WINDOW_S = 10.0  # adverts/s over this window (or since the previous look, if longer)
SILENT_AFTER_S = 15.0  # a receiver unheard this long is "silent" ...
DEAD_AFTER_S = 120.0  # ... and this long "dead"

Extra = Callable[[], dict[str, dict[str, Any]]]


def receiver_state(silent_for_s: float) -> str:
    if silent_for_s > DEAD_AFTER_S:
        return "dead"
    if silent_for_s > SILENT_AFTER_S:
        return "silent"
    return "ok"


class ReceiverHealth:
    def __init__(self, index: dict[str, int], started: float) -> None:
        self._index = index
        self.ids = tuple(sorted(index, key=index.__getitem__))
        n = len(index)
        self.adverts = np.zeros(n, dtype=np.int64)  # every advertisement, tag or not
        self.last_heard = np.full(n, -np.inf)  # input clock
        self.started = started
        self.adverts_per_s: npt.NDArray[np.float64] = np.zeros(n)
        self._samples: deque[tuple[float, npt.NDArray[np.int64]]] = deque()
        self.extra: Extra | None = None

    # ------------------------------------------------------------------ LiveTap
    def readings(self, batch: Sequence[Reading]) -> None:
        """Counted in C (a batch spans a fraction of a second: its last reading's time is when
        each receiver in it was last heard)."""
        if not batch:
            return
        index, t = self._index, batch[-1].t
        for rx, n in Counter(map(attrgetter("receiver"), batch)).items():
            i = index.get(rx)
            if i is not None:
                self.adverts[i] += n
                self.last_heard[i] = max(self.last_heard[i], t)

    def sightings(
        self, tags: Sequence[str], rx: Sequence[int], rssi: Sequence[float], t: Sequence[float]
    ) -> None:
        """Not needed for health (the web app's recorder keeps sightings)."""

    # ------------------------------------------------------------------ views
    def sample(self, now: float) -> npt.NDArray[np.float64]:
        """The rates now: over the last RATE_WINDOW_S, or since the previous sample if that is
        longer ago (the status message samples every 30 s when the web app does not every 1 s)."""
        counts = self.adverts.copy()
        self._samples.append((now, counts))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        t0, c0 = self._samples[0]
        dt = now - t0
        rate = (counts - c0) / dt if dt > 0 else np.zeros(len(counts))
        self.adverts_per_s = rate.astype(np.float64)
        return self.adverts_per_s

    def age(self, i: int, now: float) -> float | None:
        """Seconds since receiver i was last heard (None: never). max(0, ...): a sped-up
        simulation stamps ahead of the clock."""
        last = self.last_heard[i]
        return max(0.0, float(now - last)) if math.isfinite(last) else None

    def entry(self, i: int, now: float) -> dict[str, Any]:
        age = self.age(i, now)
        return {
            "adverts_per_s": round(float(self.adverts_per_s[i]), 2),
            "last_heard_s": None if age is None else round(age, 1),
            "state": receiver_state(age if age is not None else float(now - self.started)),
        }

    def report(self, now: float, resample: bool = True) -> dict[str, dict[str, Any]]:
        """Per receiver id: {"adverts_per_s", "last_heard_s", "state", "adverts", ...extra}."""
        if resample:
            self.sample(now)
        extra = self.extra() if self.extra is not None else {}
        out = {}
        for i, rx in enumerate(self.ids):
            out[rx] = {**self.entry(i, now), "adverts": int(self.adverts[i]), **extra.get(rx, {})}
        return out
