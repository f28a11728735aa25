"""Loading a store layout (TOML, DESIGN.md) with errors that name the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from positioning.errors import InputError
from positioning.layout import (
    DEFAULT_RECEIVER_HEIGHT,
    TAG_HEIGHT,
    Layout,
    Receiver,
    Reference,
    Zone,
)


def load_layout(path: str | Path) -> Layout:
    src = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(src, "", "file not found (expected a store layout in TOML)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(src, "", f"not valid TOML ({e})") from None
    return layout_from_dict(raw, src)


def _num(src: str, where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(src, where, f"expected a number (metres), got {v!r}")
    return float(v)


def _spot(src: str, where: str, r: dict[str, Any], z: float) -> tuple[float, float, float]:
    """x, y (required) and z (default `z`) of a thing on the floor plan, in metres."""
    for key in ("x", "y"):
        if key not in r:
            raise InputError(src, f"{where}.{key}", "missing (metres on the floor plan)")
    return (
        _num(src, f"{where}.x", r["x"]),
        _num(src, f"{where}.y", r["y"]),
        _num(src, f"{where}.z", r.get("z", z)),
    )


def layout_from_dict(raw: dict[str, Any], src: str = "<layout>") -> Layout:
    known_top = {"store", "receivers", "zones", "shelves", "references"}
    for k in raw:
        if k not in known_top:
            raise InputError(src, k, f"unknown section; expected one of {sorted(known_top)}")
    store = raw.get("store")
    if not isinstance(store, dict):
        raise InputError(src, "[store]", 'missing section with at least id = "..."')
    sid = store.get("id")
    if not isinstance(sid, str) or not sid:
        raise InputError(src, "store.id", "expected a non-empty string")
    tz = store.get("timezone", "UTC")
    if not isinstance(tz, str):
        raise InputError(
            src, "store.timezone", 'expected an IANA time zone name like "Europe/Berlin"'
        )
    width = _num(src, "store.width", store["width"]) if "width" in store else None
    depth = _num(src, "store.depth", store["depth"]) if "depth" in store else None

    receivers: list[Receiver] = []
    seen: set[str] = set()
    for i, r in enumerate(raw.get("receivers", [])):
        where = f"receivers[{i}]"
        if not isinstance(r, dict):
            raise InputError(src, where, "expected a table with id, x, y")
        rid = r.get("id")
        if not isinstance(rid, str) or not rid:
            raise InputError(src, f"{where}.id", "expected a non-empty string")
        if rid in seen:
            raise InputError(src, f"{where}.id", f"duplicate receiver id {rid!r}")
        seen.add(rid)
        receivers.append(Receiver(rid, *_spot(src, where, r, DEFAULT_RECEIVER_HEIGHT)))
    if not receivers:
        raise InputError(src, "[[receivers]]", "at least one receiver is needed")

    zones: list[Zone] = []
    zseen: set[str] = set()
    for i, z in enumerate(raw.get("zones", [])):
        where = f"zones[{i}]"
        if not isinstance(z, dict):
            raise InputError(src, where, "expected a table with id and polygon")
        zid = z.get("id")
        if not isinstance(zid, str) or not zid:
            raise InputError(src, f"{where}.id", "expected a non-empty string")
        if zid in zseen:
            raise InputError(src, f"{where}.id", f"duplicate zone id {zid!r}")
        zseen.add(zid)
        name = z.get("name", zid)
        zones.append(Zone(zid, str(name), _polygon(src, where, z.get("polygon"))))
    shelves: list[tuple[tuple[float, float], ...]] = []
    for i, sh in enumerate(raw.get("shelves", [])):
        if not isinstance(sh, dict):
            raise InputError(src, f"shelves[{i}]", "expected a table with polygon")
        shelves.append(_polygon(src, f"shelves[{i}]", sh.get("polygon")))
    cross = store.get("cross_aisles", [])
    if not isinstance(cross, list):
        raise InputError(src, "store.cross_aisles", "expected a list of y coordinates (metres)")
    cross_y = tuple(_num(src, f"store.cross_aisles[{i}]", v) for i, v in enumerate(cross))
    refs = _references(src, raw.get("references", []), {r.id: r for r in receivers})
    return Layout(
        sid, tz, tuple(receivers), tuple(zones), width, depth, cross_y, tuple(shelves), refs
    )


TAG_KINDS = ("ibeacon:", "eddystone:", "altbeacon:", "mac:")
REFERENCE_FORM = (
    'expected a table with tag = "ibeacon:..." and either x, y (z optional) or receiver'
)


def _references(src: str, raw: Any, receivers: dict[str, Receiver]) -> tuple[Reference, ...]:
    """`[[references]]`: fixed beacons at a spot (x, y, z) or built into a receiver."""
    if not isinstance(raw, list):
        raise InputError(src, "[[references]]", REFERENCE_FORM)
    out: list[Reference] = []
    seen: set[str] = set()
    for i, r in enumerate(raw):
        where = f"references[{i}]"
        if not isinstance(r, dict):
            raise InputError(src, where, REFERENCE_FORM)
        unknown = sorted(set(r) - {"tag", "x", "y", "z", "receiver"})
        if unknown:
            raise InputError(src, f"{where}.{unknown[0]}", f"unknown key; {REFERENCE_FORM}")
        tag = r.get("tag")
        if not isinstance(tag, str) or not tag.startswith(TAG_KINDS):
            raise InputError(
                src, f"{where}.tag", 'expected a tag id like "ibeacon:<uuid>:<major>:<minor>"'
            )
        if tag in seen:
            raise InputError(src, f"{where}.tag", f"duplicate reference {tag!r}")
        seen.add(tag)
        rid = r.get("receiver")
        if rid is not None:
            if "x" in r or "y" in r:
                raise InputError(src, where, "give either receiver or x, y, not both")
            rx = receivers.get(rid) if isinstance(rid, str) else None
            if rx is None:
                raise InputError(
                    src,
                    f"{where}.receiver",
                    f"expected a receiver id of this layout, got {rid!r} "
                    f"(its receivers: {', '.join(receivers)})",
                )
            out.append(Reference(tag, rx.x, rx.y, rx.z, rx.id))
            continue
        out.append(Reference(tag, *_spot(src, where, r, TAG_HEIGHT)))
    return tuple(out)


def _polygon(src: str, where: str, poly: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(poly, list) or len(poly) < 3:
        raise InputError(src, f"{where}.polygon", "expected at least 3 [x, y] points")
    pts: list[tuple[float, float]] = []
    for k, pt in enumerate(poly):
        if not isinstance(pt, list) or len(pt) != 2:
            raise InputError(src, f"{where}.polygon[{k}]", "expected [x, y] in metres")
        pts.append(
            (_num(src, f"{where}.polygon[{k}]", pt[0]), _num(src, f"{where}.polygon[{k}]", pt[1]))
        )
    return tuple(pts)


def scan_layout(receiver: str) -> Layout:
    """A one-receiver layout for `shelfgate scan`, which records a radio without a store."""
    return Layout("scan", "UTC", (Receiver(receiver, 0.0, 0.0),), ())
