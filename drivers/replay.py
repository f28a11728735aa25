"""Trace files (JSON lines, DESIGN.md): a fast sighting reader for replay and calibration.

The reader skips, without parsing JSON, every line that cannot hold a beacon frame: a frame
needs an iBeacon prefix (0215), an AltBeacon code (beac) or the Eddystone service (feaa) in its
hex. Most of a store's air is phones and headphones that are never tags, so this is where replay
gets most of its speed. Tags registered by address are found by their address instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from positioning.errors import InputError
from positioning.frames import tag_id_from_json

log = logging.getLogger(__name__)

FRAME_MARKERS = (b"0215", b"beac", b"feaa")
MAX_REPORTED = 5


@dataclass(slots=True)
class TraceStats:
    lines: int = 0
    sightings: int = 0
    skipped_no_frame: int = 0
    bad_lines: int = 0
    unknown_receiver: int = 0
    first_t: float | None = None
    last_t: float | None = None
    bad_examples: list[str] = field(default_factory=list)

    def bad(self, path: str, lineno: int, why: str) -> None:
        self.bad_lines += 1
        if len(self.bad_examples) < MAX_REPORTED:
            self.bad_examples.append(f"{path}:{lineno}: {why}")
            log.warning("%s:%d: skipped: %s", path, lineno, why)


def open_lines(path: str | Path) -> Iterable[bytes]:
    p = Path(path)
    if not p.exists():
        raise InputError(
            str(path), "", "file not found (expected a JSON-lines advertisement trace)"
        )
    if p.suffix == ".gz":
        import gzip

        return gzip.open(p, "rb")
    return open(p, "rb")


def candidate_lines(
    path: str | Path, needles: list[bytes], block: int = 1 << 22
) -> Iterator[tuple[int, bytes] | int]:
    """Scan the file in large blocks; yield (line number, line) for lines containing a needle
    (case-insensitive) and, after each block, the number of lines in it (an int).

    The needles are searched in the lower-cased block at C speed and mapped to lines with numpy,
    so lines that cannot hold a frame never reach Python code: this is where most of replay's
    speed comes from.
    """
    lowered = [n.lower() for n in needles]
    fh = open_lines(path)
    lineno = 0
    rest = b""
    try:
        while True:
            chunk = fh.read(block)  # type: ignore[attr-defined]
            if not chunk:
                if rest:
                    chunk, rest = rest + b"\n", b""
                else:
                    break
            else:
                chunk = rest + chunk
                cut = chunk.rfind(b"\n") + 1
                chunk, rest = chunk[:cut], chunk[cut:]
                if not chunk:
                    continue
            low = chunk.lower()
            hits = []
            for needle in lowered:
                # split is a C-speed search; piece lengths give the positions
                lens = np.fromiter(map(len, low.split(needle)), dtype=np.int64)
                if len(lens) > 1:
                    hits.append(np.cumsum(lens[:-1] + len(needle)) - len(needle))
            if hits:
                newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
                idx = np.unique(np.searchsorted(newlines, np.concatenate(hits)))
                ends = newlines[idx].tolist()
                starts = (newlines[idx - 1] + 1).tolist()
                if idx[0] == 0:
                    starts[0] = 0
                for k, a, b in zip(idx.tolist(), starts, ends, strict=True):
                    yield lineno + k + 1, chunk[a:b]
            n = chunk.count(b"\n")
            lineno += n
            yield n
    finally:
        close = getattr(fh, "close", None)
        if close is not None:
            close()


def read_sightings(
    path: str | Path,
    rx_index: dict[str, int],
    stats: TraceStats,
    registered: dict[str, str] | None = None,
) -> Iterator[tuple[str, int, float, float]]:
    """(tag, receiver index, rssi, t) for every advertisement in the trace that carries a tag.

    `registered` maps upper-case addresses to tag ids (`mac:<addr>`) for address-registered tags.
    Malformed lines are counted and skipped (the first few logged with their line number).
    """
    src = str(path)
    reg = registered or {}
    loads = orjson.loads
    candidates = 0
    for item in candidate_lines(path, [*FRAME_MARKERS, *(a.encode() for a in reg)]):
        if isinstance(item, int):
            stats.lines += item
            continue
        lineno, line = item
        candidates += 1
        try:
            obj = loads(line)
            t = obj["t"]
            rx = obj["rx"]
            rssi = obj["rssi"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            stats.bad(src, lineno, "not a JSON object with t, rx and rssi")
            continue
        if not isinstance(t, int | float) or not isinstance(rssi, int | float):
            stats.bad(src, lineno, "t and rssi must be numbers")
            continue
        tag = tag_id_from_json(obj.get("mfg"), obj.get("svc"))
        if tag is None:
            addr = obj.get("addr")
            tag = reg.get(addr.upper()) if isinstance(addr, str) else None
            if tag is None:
                stats.skipped_no_frame += 1
                continue
        i = rx_index.get(rx) if isinstance(rx, str) else None
        if i is None:
            stats.unknown_receiver += 1
            continue
        if stats.first_t is None:
            stats.first_t = float(t)
        stats.last_t = float(t)
        stats.sightings += 1
        yield tag, i, float(rssi), float(t)
    stats.skipped_no_frame += stats.lines - candidates
