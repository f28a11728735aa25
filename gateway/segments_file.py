"""Zone segments from JSON lines (DESIGN.md: truth, a `--timeline`, or events): what
`evaluate` and `report` read."""

from __future__ import annotations

from pathlib import Path

import orjson

from positioning.errors import InputError
from positioning.types import ZoneSegment


def read_segments(path: str, kind: str, types: set[str] | None = None) -> list[ZoneSegment]:
    """JSON lines with tag, zone, start, end (truth, a timeline, or events of `types`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "", f"{kind} file not found")
    out: list[ZoneSegment] = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = orjson.loads(line)
            if types is not None and o.get("type") not in types:
                continue
            zone = o.get("zone")
            if zone is not None and not isinstance(zone, str):
                raise TypeError
            out.append(ZoneSegment(str(o["tag"]), zone, float(o["start"]), float(o["end"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise InputError(
                path, f"line {n}", f"expected a {kind} object with tag, zone, start, end"
            ) from None
    return out
