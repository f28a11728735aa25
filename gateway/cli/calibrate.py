"""`shelfgate calibrate`: fit the radio model from a calibration walk (trace + labels)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from positioning.errors import InputError

from .common import open_out

if TYPE_CHECKING:
    from positioning.calibration import Stand


def cmd_calibrate(a: argparse.Namespace) -> int:
    import json

    from drivers.trace.reader import TraceStats, read_sightings
    from gateway.layoutfile import load_layout
    from positioning.calibration import calibrate
    from positioning.tags import TagResolver

    layout = load_layout(a.layout)
    stands, tags = _read_labels(a.labels)
    tag = a.tag or (tags[0] if len(tags) == 1 else None)
    if tag is None:
        raise InputError(a.labels, "tag", f"labels name several tags {tags}; choose one with --tag")
    stats = TraceStats()
    sightings = [
        (i, rssi, t)
        for tg, i, rssi, t in read_sightings(a.trace, layout.receiver_index(), stats, TagResolver())
        if tg == tag
    ]
    if not sightings:
        raise InputError(
            a.trace, "", f"the reference beacon {tag} is never heard by a receiver of the layout"
        )
    try:
        res = calibrate(layout, sightings, stands, tag_height=a.tag_height)
    except ValueError as e:
        raise InputError(a.labels, "", str(e)) from None
    Path(open_out(a.out)).write_text(
        json.dumps(res.to_json(layout.store_id), indent=2) + "\n", encoding="utf-8"
    )
    print(res.report())
    print(f"wrote {a.out}")
    return 0


def _read_labels(path: str) -> tuple[list[Stand], list[str]]:
    from positioning.calibration import Stand

    p = Path(path)
    if not p.exists():
        raise InputError(path, "", "labels file not found")
    stands: list[Stand] = []
    tags: list[str] = []
    for n, line in enumerate(p.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = orjson.loads(line)
            start, end = float(o["start"]), float(o["end"])
            zone = o.get("zone")
            if zone is not None and not isinstance(zone, str):
                raise TypeError
            xyz = [None if o.get(k) is None else float(o[k]) for k in ("x", "y", "z")]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(
                path,
                f"line {n}",
                'expected {"tag", "zone" | null, "start", "end"} (x, y, z optional)',
            ) from None
        if end <= start:
            raise InputError(path, f"line {n}", "end must be after start")
        stands.append(Stand(zone, start, end, *xyz))
        tg = o.get("tag")
        if isinstance(tg, str) and tg not in tags:
            tags.append(tg)
    if not stands:
        raise InputError(path, "", "no labels in the file")
    return stands, tags


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("calibrate", help="fit the radio model from a calibration walk")
    c.add_argument("--layout", required=True)
    c.add_argument("--trace", required=True)
    c.add_argument("--labels", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--tag", help="the reference beacon's tag id (default: the one in the labels)")
    c.add_argument(
        "--tag-height",
        type=float,
        default=1.1,
        help="beacon height in metres when labels give no z",
    )
    c.set_defaults(func=cmd_calibrate)
