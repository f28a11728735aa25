"""Beacon frame parsing: iBeacon, Eddystone-UID and AltBeacon to stable tag ids.

Input bytes are untrusted (anything a radio hears). Every parser is bounds-checked and returns
None for anything that is not exactly a frame it knows; none of them raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

APPLE = 0x004C
EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
EDDYSTONE_UID = 0x00


def parse_ibeacon(data: bytes) -> str | None:
    """Apple manufacturer data (after the company id): 02 15 uuid(16) major(2) minor(2) power(1),
    possibly followed by vendor bytes (some retail beacons append a battery level: 24 bytes)."""
    if len(data) < 23 or data[0] != 0x02 or data[1] != 0x15:
        return None
    u = data[2:18].hex()
    major = int.from_bytes(data[18:20], "big")
    minor = int.from_bytes(data[20:22], "big")
    return f"ibeacon:{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}:{major}:{minor}"


def parse_altbeacon(data: bytes) -> str | None:
    """AltBeacon manufacturer data: BE AC id1(16) id2(2) id3(2) refrssi(1) mfg-reserved(1)."""
    if len(data) != 24 or data[0] != 0xBE or data[1] != 0xAC:
        return None
    u = data[2:18].hex()
    id2 = int.from_bytes(data[18:20], "big")
    id3 = int.from_bytes(data[20:22], "big")
    return f"altbeacon:{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}:{id2}:{id3}"


def parse_eddystone_uid(data: bytes) -> str | None:
    """Eddystone service data: 00 txpower namespace(10) instance(6) [reserved(2)]."""
    if len(data) not in (18, 20) or data[0] != EDDYSTONE_UID:
        return None
    return f"eddystone:{data[2:12].hex()}:{data[12:18].hex()}"


@lru_cache(maxsize=8192)
def _tag_from_mfg(company: int, data: bytes) -> str | None:
    if company == APPLE:
        tag = parse_ibeacon(data)
        if tag is not None:
            return tag
    return parse_altbeacon(data)


@lru_cache(maxsize=4096)
def _tag_from_svc(uuid: str, data: bytes) -> str | None:
    if uuid.lower() == EDDYSTONE_UUID:
        return parse_eddystone_uid(data)
    return None


def tag_id(mfg: Mapping[int, bytes], svc: Mapping[str, bytes]) -> str | None:
    """The tag id an advertisement carries, or None when it carries no beacon frame.

    Decoding is cached by payload (beacon frames repeat), with a bounded cache so a flood of
    random payloads cannot grow memory.
    """
    for company, data in mfg.items():
        tag = _tag_from_mfg(company, data)
        if tag is not None:
            return tag
    for uuid, data in svc.items():
        tag = _tag_from_svc(uuid, data)
        if tag is not None:
            return tag
    return None


@lru_cache(maxsize=8192)
def _tag_from_mfg_hex(company: str, hexdata: str) -> str | None:
    try:
        return _tag_from_mfg(int(company), bytes.fromhex(hexdata))
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=4096)
def _tag_from_svc_hex(uuid: str, hexdata: str) -> str | None:
    try:
        return _tag_from_svc(uuid, bytes.fromhex(hexdata))
    except ValueError:
        return None


def tag_id_from_json(mfg: object, svc: object) -> str | None:
    """tag_id for the hex-encoded `mfg` / `svc` objects of a trace line (untrusted JSON)."""
    if isinstance(mfg, dict):
        for company, hexdata in mfg.items():
            if isinstance(hexdata, str):
                tag = _tag_from_mfg_hex(company, hexdata)
                if tag is not None:
                    return tag
    if isinstance(svc, dict):
        for uuid, hexdata in svc.items():
            if isinstance(hexdata, str):
                tag = _tag_from_svc_hex(uuid, hexdata)
                if tag is not None:
                    return tag
    return None


def ibeacon_payload(uuid: str, major: int, minor: int, power: int = -59) -> bytes:
    """Manufacturer data (after Apple's company id) of an iBeacon frame."""
    return (
        b"\x02\x15"
        + bytes.fromhex(uuid.replace("-", ""))
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + (power & 0xFF).to_bytes(1, "big")
    )


def altbeacon_payload(id1: str, id2: int, id3: int, power: int = -59) -> bytes:
    return (
        b"\xbe\xac"
        + bytes.fromhex(id1.replace("-", ""))
        + id2.to_bytes(2, "big")
        + id3.to_bytes(2, "big")
        + (power & 0xFF).to_bytes(1, "big")
        + b"\x00"
    )


def eddystone_uid_payload(namespace: str, instance: str, power: int = -20) -> bytes:
    return (
        b"\x00"
        + (power & 0xFF).to_bytes(1, "big")
        + bytes.fromhex(namespace + instance)
        + b"\x00\x00"
    )
