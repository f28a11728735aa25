"""The one place that reads clocks. Durations come from the monotonic clock; wall time is
used only at the edge (event timestamps), converted from monotonic time with the wall clock's
offset at that moment, so an NTP step never changes a dwell's duration (R9)."""

from __future__ import annotations

import os
import time
from pathlib import Path

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


class Clock:
    speed = 1.0  # input seconds per real second (a `ScaledClock` runs faster)

    def real(self) -> Clock:
        """The real clock under this one (itself, unless scaled)."""
        return self

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()

    def to_wall(self, mono: float) -> float:
        """Wall time of a monotonic instant, with the wall clock as it is now."""
        return mono + (self.wall() - self.mono())

    def synced(self) -> bool:
        """Whether the wall clock is believed right: systemd-timesyncd's flag, or the kernel's
        NTP status; SHELFGATE_CLOCK_SYNCED=1/0 overrides (containers, tests)."""
        env = os.environ.get("SHELFGATE_CLOCK_SYNCED")
        if env is not None:
            return env == "1"
        if TIMESYNC_FLAG.exists():
            return True
        return _kernel_ntp_synced()


def _kernel_ntp_synced() -> bool:
    try:
        import ctypes
        import ctypes.util

        class Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("pad", ctypes.c_long * 25)]

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = Timex()
        state = libc.adjtimex(ctypes.byref(tx))
        return bool(state != 5)  # TIME_ERROR (5): clock not synchronised
    except (OSError, AttributeError):
        return False


class FakeClock(Clock):
    """A clock tests drive: monotonic time advances by hand, the wall clock can jump."""

    def __init__(
        self, mono: float = 1000.0, wall_offset: float = 1767261600.0, synced: bool = True
    ) -> None:
        self._mono = mono
        self.wall_offset = wall_offset
        self.is_synced = synced

    def wall(self) -> float:
        return self._mono + self.wall_offset

    def mono(self) -> float:
        return self._mono

    def advance(self, dt: float) -> None:
        self._mono += dt

    def synced(self) -> bool:
        return self.is_synced


class ScaledClock(Clock):
    """The input's clock of a store played faster than real time (`speed=N` of a networked
    source): from the wall instant `epoch` on, monotonic and wall time both run `speed` times
    faster than `base`, so the pipeline's deadlines (a tag lost, a dwell's gap), the events'
    wall times and a node's timestamps made by the same rule all agree. At N = 1 it is `base`.
    Store wall time at real wall time W: epoch + (W - epoch) * speed."""

    def __init__(self, base: Clock, speed: float, epoch: float | None = None) -> None:
        self.base = base
        self.speed = speed
        self._off = base.wall() - base.mono()  # wall - monotonic, fixed at the start
        self._o = (base.wall() if epoch is None else epoch) - self._off  # epoch, monotonic

    def mono(self) -> float:
        return self._o + (self.base.mono() - self._o) * self.speed

    def wall(self) -> float:
        return self.mono() + self._off

    def synced(self) -> bool:
        return self.base.synced()

    def real(self) -> Clock:
        return self.base
