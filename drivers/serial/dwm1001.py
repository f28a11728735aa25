"""Decawave DWM1001 (PANS shell, `lec` CSV): a UWB module that reports its own position."""

from __future__ import annotations

from dataclasses import dataclass

from .ad import MAX_LINE


@dataclass(frozen=True, slots=True)
class UwbFix:
    """A DWM1001 position (metres) with the module's quality factor (0-100)."""

    x: float
    y: float
    z: float
    quality: int
    anchors: int


class DwmDecoder:
    """`lec` CSV lines: DIST,n,(ANi,id,x,y,z,range)*n[,POS,x,y,z,quality]. Lines without a
    position or with the wrong field count are dropped."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad_lines = 0

    def feed(self, data: bytes, t: float = 0.0) -> list[UwbFix]:
        buf = self._buf
        buf += data
        out: list[UwbFix] = []
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE:
                    del buf[:]
                    self.bad_lines += 1
                break
            line = bytes(buf[:nl]).strip().decode("ascii", "replace")
            del buf[: nl + 1]
            if not line.startswith("DIST,"):
                continue
            fix = self._line(line)
            if fix is None:
                self.bad_lines += 1
            elif isinstance(fix, UwbFix):
                out.append(fix)
        return out

    @staticmethod
    def _line(line: str) -> UwbFix | bool | None:
        f = line.split(",")
        try:
            n = int(f[1])
        except (IndexError, ValueError):
            return None
        if n < 0 or n > 16:
            return None
        base = 2 + 6 * n
        if len(f) == base:
            return False  # ranges only, no fix yet: valid, nothing to report
        if len(f) != base + 5 or f[base] != "POS":
            return None
        for k in range(n):
            if not f[2 + 6 * k].startswith("AN"):
                return None
        try:
            x, y, z = float(f[base + 1]), float(f[base + 2]), float(f[base + 3])
            q = int(f[base + 4])
        except ValueError:
            return None
        if not 0 <= q <= 100 or any(v != v or abs(v) > 1e4 for v in (x, y, z)):
            return None
        return UwbFix(x, y, z, q, n)
