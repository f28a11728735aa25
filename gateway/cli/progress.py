"""Progress of a long command on a terminal: one line on stderr, redrawn at most 10 times a
second, erased at the end. Nothing at all when stderr is not a terminal (a pipe, a log file, CI),
so what scripts read stays as it was."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import orjson

REDRAW_S = 0.1
WIDTH = 24


class Progress:
    def __init__(self, what: str, total: float | None = None, stream: IO[str] | None = None):
        self.what = what
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self.stream)
        self._t0 = time.monotonic()
        self._drawn = float("-inf")
        self._done = 0.0
        self._note = ""
        if self.enabled:
            self._draw()

    def update(self, done: float, note: str = "") -> None:
        """`done` of `total` (or a count without a total); `note` follows the figures."""
        self._done, self._note = done, note
        if self.enabled and time.monotonic() - self._drawn >= REDRAW_S:
            self._draw()

    def stage(self, note: str, done: float | None = None) -> None:
        """A step (drawn at once), optionally with how far the whole has got."""
        self._note = note
        if done is not None:
            self._done = done
        if self.enabled:
            self._draw()

    def close(self) -> None:
        """The final state once, then the line erased (the command's own summary follows)."""
        if not self.enabled:
            return
        if self.total:
            self._done = self.total
        self._draw()
        self.stream.write("\r\x1b[K")
        self.stream.flush()
        self.enabled = False

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        el = self._drawn - self._t0
        if self.total:
            frac = min(max(self._done / self.total, 0.0), 1.0)
            bar = "#" * int(frac * WIDTH) + "." * (WIDTH - int(frac * WIDTH))
            eta = f", {_mmss(el / frac - el)} left" if 0.02 < frac < 1.0 else ""
            body = f"{int(100 * frac):3d}% [{bar}] {_mmss(el)}{eta}"
        else:
            body = f"{self._done:,.0f} {_mmss(el)}"
        note = f"  {self._note}" if self._note else ""
        self.stream.write(f"\r\x1b[K{self.what}: {body}{note}")
        self.stream.flush()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _mmss(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 60}:{s % 60:02d}"


def trace_span(path: str | Path) -> tuple[float, float] | None:
    """The first and last `t` of a plain (not gzipped) trace, read from its two ends; None when
    they cannot be read cheaply (a .gz, an empty or odd file): progress then shows counts."""
    p = Path(path)
    if p.suffix == ".gz":
        return None
    try:
        with p.open("rb") as fh:
            head = fh.read(65536).splitlines()
            size = fh.seek(0, 2)
            fh.seek(max(0, size - 65536))
            tail = fh.read().splitlines()
    except OSError:
        return None
    first, last = _first_t(head), _first_t(reversed(tail))
    if first is None or last is None or last <= first:
        return None
    return first, last


def _first_t(lines: Iterable[bytes]) -> float | None:
    for line in lines:
        try:
            t = orjson.loads(line)["t"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(t, int | float):
            return float(t)
    return None
