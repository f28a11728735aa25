"""Trace files (JSON lines, DESIGN.md): a fast sighting reader for replay, and an Advertisement reader.

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

import orjson

from positioning.errors import InputError
from positioning.frames import tag_id_from_json
from positioning.types import Advertisement

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
        raise InputError(str(path), "", "file not found (expected a JSON-lines advertisement trace)")
    if p.suffix == ".gz":
        import gzip

        return gzip.open(p, "rb")
    return open(p, "rb")  # noqa: SIM115 - closed by the caller's iteration end


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
    reg_needles = [a.encode() for a in reg]
    loads = orjson.loads
    markers = FRAME_MARKERS
    lineno = 0
    fh = open_lines(path)
    try:
        for line in fh:
            lineno += 1
            low = line.lower()
            if not (markers[0] in low or markers[1] in low or markers[2] in low) and not (
                reg_needles and any(a in line.upper() for a in reg_needles)
            ):
                if line.strip():
                    stats.skipped_no_frame += 1
                continue
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
            i = rx_index.get(rx)
            if i is None:
                stats.unknown_receiver += 1
                continue
            if stats.first_t is None:
                stats.first_t = float(t)
            stats.last_t = float(t)
            stats.sightings += 1
            yield tag, i, float(rssi), float(t)
    finally:
        stats.lines = lineno
        close = getattr(fh, "close", None)
        if close is not None:
            close()


def parse_advertisement(obj: object) -> Advertisement | None:
    """An Advertisement from one decoded trace line, or None when it is not one."""
    if not isinstance(obj, dict):
        return None
    try:
        t, rx, rssi = obj["t"], obj["rx"], obj["rssi"]
        if not isinstance(t, int | float) or not isinstance(rssi, int) or not isinstance(rx, str):
            return None
        mfg_raw = obj.get("mfg") or {}
        svc_raw = obj.get("svc") or {}
        mfg = {int(k): bytes.fromhex(v) for k, v in mfg_raw.items()}
        svc = {str(k): bytes.fromhex(v) for k, v in svc_raw.items()}
        tx = obj.get("tx")
        name = obj.get("name")
        return Advertisement(
            float(t), rx, str(obj.get("addr", "")), rssi, mfg, svc,
            tx if isinstance(tx, int) else None, name if isinstance(name, str) else None,
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def read_advertisements(path: str | Path, stats: TraceStats) -> Iterator[Advertisement]:
    src = str(path)
    fh = open_lines(path)
    lineno = 0
    try:
        for line in fh:
            lineno += 1
            if not line.strip():
                continue
            try:
                adv = parse_advertisement(orjson.loads(line))
            except orjson.JSONDecodeError:
                adv = None
            if adv is None:
                stats.bad(src, lineno, "not an advertisement (see the trace format in DESIGN.md)")
                continue
            yield adv
    finally:
        stats.lines = lineno
        close = getattr(fh, "close", None)
        if close is not None:
            close()
