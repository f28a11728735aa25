"""Trace files (JSON lines, DESIGN.md): a fast sighting reader for replay and calibration.

The reader skips, without parsing JSON, every line that cannot hold a beacon frame: a frame
needs an iBeacon prefix (0215), an AltBeacon code (beac) or the Eddystone service (feaa) in its
hex. Most of a store's air is phones and headphones that are never tags, so this is where replay
gets most of its speed. Tags are resolved by the pipeline's `TagResolver` (the same one every
live source's advertisements go through), applied here, where the lines are parsed, so that
parsing and resolution run together in the worker processes; tags registered by address are
found by their address.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from drivers.advertisement import RSSI_MAX, RSSI_MIN
from positioning.errors import InputError
from positioning.tags import TagResolver

log = logging.getLogger(__name__)

FRAME_MARKERS = (b"0215", b"beac", b"feaa")
MAX_REPORTED = 5
# a trace is in time order (DESIGN.md); receivers merged by arrival may be a little out of it,
# but a sighting further back than this would be taken on a clock that has moved on
ORDER_TOLERANCE_S = 5.0
_CLOSE = ord("}")
_TRAILING = (ord("\r"), ord(" "), ord("\t"))


@dataclass(slots=True)
class TraceStats:
    lines: int = 0
    sightings: int = 0
    skipped_no_frame: int = 0
    bad_lines: int = 0
    unknown_receiver: int = 0
    out_of_order: int = 0  # sightings more than ORDER_TOLERANCE_S before the latest time read
    first_t: float | None = None
    last_t: float | None = None
    max_t: float = float("-inf")  # the latest time read so far (this reader's blocks)
    bad_examples: list[str] = field(default_factory=list)
    order_examples: list[str] = field(default_factory=list)

    def bad(self, path: str, lineno: int, why: str) -> None:
        self.bad_lines += 1
        if len(self.bad_examples) < MAX_REPORTED:
            self.bad_examples.append(f"{path}:{lineno}: {why}")
            log.warning("%s:%d: skipped: %s", path, lineno, why)


def require_trace(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(
            str(path), "", "file not found (expected a JSON-lines advertisement trace)"
        )
    return p


def open_lines(path: str | Path) -> Iterable[bytes]:
    p = require_trace(path)
    if p.suffix == ".gz":
        import gzip

        return gzip.open(p, "rb")
    return open(p, "rb")


class SightingBlock(NamedTuple):
    """A block of a trace's sightings, in file order, as columns."""

    tags: list[str]
    rx: npt.NDArray[np.int64]
    rssi: npt.NDArray[np.float64]
    t: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.tags)


def candidate_lines(
    path: str | Path,
    needles: list[bytes],
    block: int = 1 << 22,
    start: int = 0,
    end: int | None = None,
) -> Iterator[tuple[int, list[bytes], npt.NDArray[np.int64], int, npt.NDArray[np.int64]]]:
    """Scan the file (or its bytes `start` to `end`, both line starts) in large blocks; per block
    yield (lines before it in the range, the lines containing a needle (case-insensitive), their
    indices in the block, lines in the block, indices of the other lines that cannot be a JSON
    object: not blank and not ending in `}`, e.g. truncated by a power cut).

    The needles are searched in the block with numpy (`NeedleSearch`) and mapped to lines,
    so lines that cannot hold a frame never reach Python code: this is where most of replay's
    speed comes from.
    """
    find = NeedleSearch(needles).starts
    is_nl = np.empty(0, dtype=bool)  # reused: a fresh block-sized array costs its page faults
    fh = open_lines(path)
    lineno = 0
    rest = b""
    left = -1 if end is None else end - start
    try:
        if start:
            fh.seek(start)  # type: ignore[attr-defined]
        while True:
            chunk = fh.read(block if left < 0 else min(block, left))  # type: ignore[attr-defined]
            left = left - len(chunk) if left >= 0 else left
            if not chunk:
                if rest:
                    chunk, rest = rest + b"\n", b""
                else:
                    break
                cut = len(chunk)
            else:
                chunk = rest + chunk if rest else chunk
                # the block's lines end at `cut`; the bytes after it start the next block (not
                # copied off: every step below stops at `cut`)
                cut = chunk.rfind(b"\n") + 1
                rest = chunk[cut:]
                if not cut:
                    continue
            if len(is_nl) < cut:
                is_nl = np.empty(cut, dtype=bool)
            u8 = np.frombuffer(chunk, dtype=np.uint8, count=cut)
            newlines = np.flatnonzero(np.equal(u8, 10, out=is_nl[:cut]))
            idx = np.sort(np.searchsorted(newlines, find(chunk, cut)))
            idx = idx[np.diff(idx, prepend=-1) != 0]  # each line once
            starts = np.where(idx > 0, newlines[idx - 1] + 1, 0).tolist()
            lines = [chunk[a:b] for a, b in zip(starts, newlines[idx].tolist(), strict=True)]
            yield lineno, lines, idx, len(newlines), _broken(chunk, newlines, idx)
            lineno += len(newlines)
    finally:
        close = getattr(fh, "close", None)
        if close is not None:
            close()


class NeedleSearch:
    """Every occurrence of any of `needles` in a block of bytes, ignoring ASCII case: what
    `re.finditer` on the lower-cased block finds (overlapping occurrences too), without the
    lower-cased copy. A needle's first four bytes are compared as one 32-bit word at each of the
    four byte offsets (its letters' case bit masked), the rest checked at those positions only:
    a few numpy passes over the block instead of one regex scan per needle."""

    def __init__(self, needles: Iterable[bytes]) -> None:
        # (first word, its case mask, the whole needle, its per-byte case masks)
        self._words: list[tuple[int, int, bytes, bytes]] = []
        self._short: list[Callable[..., Iterator[re.Match[bytes]]]] = []
        self._work: dict[object, npt.NDArray[Any]] = {}
        for n in dict.fromkeys(x.lower() for x in needles):
            if len(n) < 4 or b"\n" in n:  # never a frame marker or an address: the plain way
                self._short.append(re.compile(re.escape(n)).finditer)
                continue
            masks = bytes(0x20 if 97 <= c <= 122 else 0 for c in n)
            word = int.from_bytes(n[:4], "little")
            self._words.append((word, int.from_bytes(masks[:4], "little"), n, masks))

    def starts(self, buf: bytes, end: int) -> npt.NDArray[np.int64]:
        """Start offsets (any order) of the occurrences that end at or before `end`."""
        found: list[npt.NDArray[np.int64]] = []
        u8 = np.frombuffer(buf, dtype=np.uint8, count=end)
        for k in range(4):
            if end - k < 4:
                break
            w = np.frombuffer(buf, dtype="<u4", count=(end - k) // 4, offset=k)
            n_w = len(w)
            masked: dict[int, npt.NDArray[np.uint32]] = {}
            any_hit = None
            hit = self._scratch("hit", n_w, np.bool_)
            for word, mask, n, masks in self._words:
                if mask not in masked:
                    masked[mask] = (
                        np.bitwise_or(w, mask, out=self._scratch(mask, n_w, np.uint32))
                        if mask
                        else w
                    )
                np.equal(masked[mask], word, out=hit)
                if len(n) > 4:
                    pos = np.flatnonzero(hit) * 4 + k
                    pos = pos[pos + len(n) <= end]
                    for j in range(4, len(n)):
                        pos = pos[(u8[pos + j] | masks[j]) == n[j]]
                    found.append(pos)
                elif any_hit is None:
                    any_hit = self._scratch("any", n_w, np.bool_)
                    any_hit[:] = hit
                else:
                    any_hit |= hit
            if any_hit is not None:
                found.append(np.flatnonzero(any_hit) * 4 + k)
        if self._short:
            low = buf[:end].lower()
            found += [np.array([m.start() for m in f(low)], dtype=np.int64) for f in self._short]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _scratch(self, key: object, n: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
        """A reused work array (a fresh block-sized array each time costs its page faults,
        more than the comparison itself)."""
        a = self._work.get(key)
        if a is None or len(a) < n:
            a = self._work[key] = np.empty(n, dtype=dtype)
        return a[:n]


def _broken(
    chunk: bytes, newlines: npt.NDArray[np.int64], hits: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Indices of the lines (not among `hits`) whose last byte, trailing whitespace aside, is not
    `}`; blank lines are not counted. Vectorised: a look at two bytes per line."""
    buf = np.frombuffer(chunk, dtype=np.uint8)
    starts = np.concatenate(([0], newlines[:-1] + 1))
    end = newlines - 1  # the last byte of each line (or the previous newline if it is empty)
    last = np.where(end >= starts, buf[np.maximum(end, 0)], 10)
    ws = np.isin(last, _TRAILING) & (end - 1 >= starts)
    last = np.where(ws, buf[np.maximum(end - 1, 0)], last)
    bad = (last != _CLOSE) & (last != 10) & ~np.isin(last, _TRAILING)
    bad[hits] = False
    return np.flatnonzero(bad)


class _Irregular(Exception):
    """A block the columnar fast path cannot take as a whole; parsed line by line instead."""


def read_blocks(
    path: str | Path,
    rx_index: dict[str, int],
    stats: TraceStats,
    resolver: TagResolver,
    start: int = 0,
    end: int | None = None,
    lines_before: Callable[[int], int] | None = None,
    in_order: bool = True,
) -> Iterator[SightingBlock]:
    """The trace's tag sightings, a block (a few thousand) at a time, as columns.

    With `in_order` (for whatever feeds a clock: replay, report) sightings more than
    ORDER_TOLERANCE_S before the latest time read are dropped and counted; without it (a reader
    that sorts what it read, as calibration does) every sighting is kept in file order.

    Malformed lines are counted and skipped (the first few logged with their line number).
    A block whose lines are all well-formed is converted column-wise; a block with a bad line is
    parsed line by line, so the bad line is reported and every good one kept.
    """
    src = str(path)
    needles = [*FRAME_MARKERS, *(a.encode() for a in resolver.registered)]
    loads = orjson.loads
    first_line = 0 if start == 0 else -1  # a range's line numbers are counted when needed
    for base, lines, idx, n_lines, broken in candidate_lines(path, needles, start=start, end=end):
        stats.lines += n_lines
        stats.skipped_no_frame += n_lines - len(lines) - len(broken)
        if len(broken):
            if first_line < 0:
                first_line = (lines_before or LineCounter(path).lines_before)(start)
            for lineno in (broken + first_line + base + 1).tolist():
                stats.bad(src, lineno, "truncated, or not a JSON object")
        if not lines:
            continue
        try:
            tags, rx, rssi, t = _columns([loads(ln) for ln in lines], rx_index, resolver, stats)
        except (_Irregular, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            if first_line < 0:
                first_line = (lines_before or LineCounter(path).lines_before)(start)
            linenos = (idx + first_line + base + 1).tolist()
            objs = _valid_objects(lines, linenos, src, stats)
            tags, rx, rssi, t = _columns(objs, rx_index, resolver, stats)
        if tags and in_order:
            tags, rx, rssi, t = _in_order(tags, rx, rssi, t, stats, src, rx_index)
        if tags:
            if stats.first_t is None:
                stats.first_t = t[0]
            stats.last_t = t[-1]
            stats.sightings += len(tags)
            yield SightingBlock(
                tags,
                np.array(rx, dtype=np.int64),
                np.array(rssi, dtype=np.float64),
                np.array(t, dtype=np.float64),
            )


def _in_order(
    tags: list[str],
    rx: list[int],
    rssi: list[float],
    t: list[float],
    stats: TraceStats,
    src: str,
    rx_index: dict[str, int],
) -> tuple[list[str], list[int], list[float], list[float]]:
    """Drops (counted, the first few named) sightings more than ORDER_TOLERANCE_S before the
    latest time read before them: the pipeline's clock has moved past them, and taking them
    would silently cut stays short. One vectorised pass; the Python loop only when one is late."""
    ta = np.asarray(t)
    before = np.maximum.accumulate(np.concatenate(([stats.max_t], ta)))
    stats.max_t = float(before[-1])
    late = ta < before[:-1] - ORDER_TOLERANCE_S
    if not late.any():
        return tags, rx, rssi, t
    names = {i: r for r, i in rx_index.items()}
    keep = (~late).tolist()
    for k in np.flatnonzero(late).tolist():
        stats.out_of_order += 1
        if len(stats.order_examples) < MAX_REPORTED:
            why = (
                f"{src}: receiver {names.get(rx[k], rx[k])!r} at t={t[k]:.3f} is "
                f"{before[k] - t[k]:.0f} s before the trace's latest time: skipped (a trace must "
                f"be in time order; sort it by t)"
            )
            stats.order_examples.append(why)
            log.warning("%s", why)
    pick = [k for k, ok in enumerate(keep) if ok]
    return (
        [tags[k] for k in pick],
        [rx[k] for k in pick],
        [rssi[k] for k in pick],
        [t[k] for k in pick],
    )


_NUMBER = {int, float}  # JSON numbers (true/false are not an RSSI or a time)
_STR = {str}
RSSI_RANGE = (float(RSSI_MIN), float(RSSI_MAX))
T_RANGE = (946684800.0, 4102444800.0)  # 2000-01-01 .. 2100-01-01: a plausible unix time


class LineCounter:
    """Line numbers of byte offsets, counted on demand and onwards from the last offset asked
    (a reader that asks for increasing offsets reads the file at most once)."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._offset = 0
        self._lines = 0

    def lines_before(self, offset: int) -> int:
        if offset < self._offset:
            self._offset, self._lines = 0, 0
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            while self._offset < offset:
                chunk = fh.read(min(1 << 22, offset - self._offset))
                if not chunk:
                    break
                self._lines += chunk.count(b"\n")
                self._offset += len(chunk)
        return self._lines


def _columns(
    objs: list[Any], rx_index: dict[str, int], resolver: TagResolver, stats: TraceStats
) -> tuple[list[str], list[int], list[float], list[float]]:
    """Tag sightings of decoded trace lines, column-wise; every line must be an object with t,
    rx and rssi, t and rssi numbers (else an exception, and the block goes line by line)."""
    if not objs:
        return [], [], [], []
    ts = [o["t"] for o in objs]  # KeyError or TypeError: not such an object
    rs = [o["rssi"] for o in objs]
    names = [o["rx"] for o in objs]
    if not _NUMBER.issuperset(map(type, ts)) or not _NUMBER.issuperset(map(type, rs)):
        raise _Irregular
    if min(ts) < T_RANGE[0] or max(ts) > T_RANGE[1]:
        raise _Irregular  # line by line: each implausible line is named
    if min(rs) < RSSI_RANGE[0] or max(rs) > RSSI_RANGE[1]:
        raise _Irregular
    if _STR.issuperset(map(type, names)):
        rxs: list[int | None] = list(map(rx_index.get, names))
    else:
        rxs = [rx_index.get(r) if type(r) is str else None for r in names]
    resolve = resolver.resolve_json
    tags = [resolve(o.get("mfg"), o.get("svc"), o.get("addr")) for o in objs]
    if None not in tags and None not in rxs:  # the usual block: every line a tag we know
        return tags, rxs, list(map(float, rs)), list(map(float, ts))  # type: ignore[return-value]
    out_tags, out_rx, out_rssi, out_t = [], [], [], []
    for k, tag in enumerate(tags):
        if tag is None:
            stats.skipped_no_frame += 1
            continue
        i = rxs[k]
        if i is None:
            stats.unknown_receiver += 1
            continue
        out_tags.append(tag)
        out_rx.append(i)
        out_rssi.append(float(rs[k]))
        out_t.append(float(ts[k]))
    return out_tags, out_rx, out_rssi, out_t


def _valid_objects(
    lines: list[bytes], linenos: list[int], src: str, stats: TraceStats
) -> list[Any]:
    """The lines that are JSON objects with t, rx and rssi (t and rssi numbers); each other line
    is counted and, the first few, reported with its line number."""
    good = []
    for lineno, line in zip(linenos, lines, strict=True):
        try:
            obj = orjson.loads(line)
            t, rssi, _ = obj["t"], obj["rssi"], obj["rx"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            stats.bad(src, lineno, "not a JSON object with t, rx and rssi")
            continue
        if type(t) not in _NUMBER or type(rssi) not in _NUMBER:
            stats.bad(src, lineno, "t and rssi must be numbers")
            continue
        if not T_RANGE[0] <= t <= T_RANGE[1]:
            stats.bad(src, lineno, f"t {t!r} is not a plausible unix time (seconds, 2000-2100)")
            continue
        if not RSSI_RANGE[0] <= rssi <= RSSI_RANGE[1]:
            stats.bad(src, lineno, f"rssi {rssi!r} is outside {RSSI_MIN}..{RSSI_MAX} dBm")
            continue
        good.append(obj)
    return good


def read_sightings(
    path: str | Path,
    rx_index: dict[str, int],
    stats: TraceStats,
    resolver: TagResolver,
    in_order: bool = True,
) -> Iterator[tuple[str, int, float, float]]:
    """(tag, receiver index, rssi, t) for every advertisement in the trace that carries a tag."""
    for b in read_blocks(path, rx_index, stats, resolver, in_order=in_order):
        yield from zip(b.tags, b.rx.tolist(), b.rssi.tolist(), b.t.tolist(), strict=True)
