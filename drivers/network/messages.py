"""Networked receivers' MQTT messages, decoded (sans-IO): one message in, the fields of one
`Advertisement` out (address, RSSI, manufacturer and service data as bytes), or a `Malformed`
reason. No tag is resolved here: where a node sends only a beacon's identity (ESPresense; a
Theengs node without raw data), the equivalent frame bytes are rebuilt, so the pipeline's one
resolver names the tag exactly as it would from a radio.

Formats, as their firmware writes them:

- Theengs Gateway / OpenMQTTGateway, topic `<prefix>/BTtoMQTT/<MAC>`: `{"id": "<MAC>",
  "rssi": int, "manufacturerdata": hex, "servicedatauuid": ..., "servicedata": hex, ...}`.
  `manufacturerdata` starts with the company id, little endian (Theengs packs it with
  `struct.pack("<H", company)`: Apple's iBeacon is `4c000215...`). `servicedatauuid` is the
  16-bit UUID: `"feaa"` from Theengs (`uuid[4:8]` of bleak's 128-bit string), `"0xfeaa"` from
  OpenMQTTGateway (NimBLE's `toString()`), or a full 128-bit UUID. A message the node decoded
  and stripped of raw data may still carry an iBeacon's `uuid` / `major` / `minor`
  (Theengs Decoder's `"model_id": "IBEACON"`). `ts` (unix seconds) is not the firmware's: a
  node with a good clock may add when it heard the advertisement (the source's clock=receiver).
- ESPresense, topic `espresense/devices/<id>/<room>`: `{"mac", "id", "rssi@1m", "rssi",
  "rxAdj", ...}` with ids `iBeacon:<uuid>-<major>-<minor>`, `altBeacon:<id1>-<id2>-<id3>`,
  `eddy:<namespace>-<instance>` (the firmware prints namespace byte 4 twice: 11 bytes, see
  `_eddystone`), and others that name no beacon (`known:<mac>`, `name:...`, a MAC). Its `rssi`
  is a filtered level with `rxAdj` already taken off (`addMeasurement(raw - rxAdjRssi)`), so
  the received level is `rssi + rxAdj`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from drivers.advertisement import RSSI_MAX, RSSI_MIN
from positioning.frames import (
    EDDYSTONE_UUID,
    altbeacon_payload,
    eddystone_uid_payload,
    ibeacon_payload,
)

APPLE = 0x004C
RADIUS_NETWORKS = 0x0118  # AltBeacon's company in synthesised frames (ignored by the resolver)
BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"
HEX_MAX = 512  # hex characters of one field: an extended advertisement is at most 255 bytes

_HEX = re.compile(r"[0-9a-fA-F]*")
_UUID36 = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ESPRESENSE_BEACON = re.compile(r"(iBeacon|altBeacon):([0-9a-fA-F-]{36})-(\d{1,5})-(\d{1,5})")
_ESPRESENSE_EDDY = re.compile(r"eddy:([0-9a-f]{22}|[0-9a-f]{20})-([0-9a-f]{12})")


@dataclass(frozen=True, slots=True)
class Heard:
    """What one message says a receiver heard."""

    address: str
    rssi: int
    mfg: Mapping[int, bytes]
    svc: Mapping[str, bytes]
    name: str | None = None
    t: float | None = None  # the node's own timestamp (unix s), if it sends one (`ts`)


class Malformed(ValueError):
    """A message that is not the format it claims; the text is the reason (counted, logged)."""


def decode_theengs(obj: Any) -> Heard:
    """A Theengs Gateway / OpenMQTTGateway BTtoMQTT message (parsed JSON)."""
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    address = obj.get("id")
    if not isinstance(address, str) or not 0 < len(address) <= 64:
        raise Malformed("no device id")
    rssi = _rssi(obj.get("rssi"))
    mfg: dict[int, bytes] = {}
    svc: dict[str, bytes] = {}
    raw = obj.get("manufacturerdata")
    if raw is not None:
        mfg = _manufacturer(raw)
    sd, sd_uuid = obj.get("servicedata"), obj.get("servicedatauuid")
    if sd is not None and sd_uuid is not None:  # older OpenMQTTGateway sends no uuid: unusable
        svc = {_service_uuid(sd_uuid): _hex(sd, "servicedata")}
    if not mfg and not svc and obj.get("model_id") == "IBEACON":
        mfg = _decoded_ibeacon(obj)
    name = obj.get("name")
    ts: Any = obj.get("ts")
    t = float(ts) if _number_t(ts) else None
    return Heard(address.upper(), rssi, mfg, svc, name if isinstance(name, str) else None, t)


def decode_espresense(obj: Any) -> Heard:
    """An ESPresense `espresense/devices/<id>/<room>` message (parsed JSON)."""
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    ident = obj.get("id")
    if not isinstance(ident, str) or not 0 < len(ident) <= 128:
        raise Malformed("no device id")
    level = obj.get("rssi")
    adj = obj.get("rxAdj", 0)
    if not _number(level) or not _number(adj):
        raise Malformed("rssi / rxAdj: expected numbers")
    rssi = _rssi(round(level + adj))
    ref: Any = obj.get("rssi@1m")
    power = int(ref) if _number(ref) and -127 <= ref <= 20 else -59
    mac = obj.get("mac")
    address = _mac(mac) if isinstance(mac, str) else ident
    mfg, svc = espresense_frames(ident, power)
    return Heard(address, rssi, mfg, svc)


@lru_cache(maxsize=4096)
def espresense_frames(ident: str, power: int) -> tuple[Mapping[int, bytes], Mapping[str, bytes]]:
    """The frame bytes an ESPresense id stands for ({} for ids that name no beacon)."""
    m = _ESPRESENSE_BEACON.fullmatch(ident)
    if m is not None:
        kind, uuid, a, b = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        if not _UUID36.fullmatch(uuid) or a > 0xFFFF or b > 0xFFFF:
            raise Malformed(f"id {ident!r}: bad beacon identity")
        if kind == "iBeacon":
            return {APPLE: ibeacon_payload(uuid, a, b, power)}, {}
        return {RADIUS_NETWORKS: altbeacon_payload(uuid, a, b, power)}, {}
    m = _ESPRESENSE_EDDY.fullmatch(ident)
    if m is not None:
        namespace = _eddystone(m.group(1))
        return {}, {EDDYSTONE_UUID: eddystone_uid_payload(namespace, m.group(2), power)}
    if ident.startswith(("iBeacon:", "altBeacon:", "eddy:")):
        raise Malformed(f"id {ident[:80]!r}: not the firmware's beacon id layout")
    return {}, {}


def _eddystone(printed: str) -> str:
    """The 10-byte namespace from ESPresense's `eddy:` id. Its firmware formats the namespace
    with `strServiceData[6]` twice (bytes 2..11 of the service data, byte 6 repeated: 11 bytes,
    22 hex digits); a corrected firmware would print 20."""
    if len(printed) == 22 and printed[8:10] == printed[10:12]:
        return printed[:10] + printed[12:]
    if len(printed) == 20:
        return printed
    raise Malformed(f"eddy:{printed}: namespace is not the firmware's layout")


def _rssi(v: Any) -> int:
    if not isinstance(v, int | float) or isinstance(v, bool) or v != v:
        raise Malformed("rssi: expected a number")
    if not RSSI_MIN <= v <= RSSI_MAX:
        raise Malformed(f"rssi {v} out of range")
    return int(v)


def _number_t(v: Any) -> bool:
    """A plausible unix time (seconds, 2001 .. 2286)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and 1e9 < v < 1e10


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) < 1e6


@lru_cache(maxsize=8192)
def _manufacturer_bytes(raw: str) -> dict[int, bytes]:
    data = _hex(raw, "manufacturerdata")
    if len(data) < 2:
        raise Malformed("manufacturerdata: shorter than a company id")
    return {int.from_bytes(data[:2], "little"): data[2:]}


def _manufacturer(raw: Any) -> dict[int, bytes]:
    if not isinstance(raw, str):
        raise Malformed("manufacturerdata: expected a hex string")
    return _manufacturer_bytes(raw)


@lru_cache(maxsize=1024)
def _service_uuid_text(u: str) -> str:
    s = u.lower().removeprefix("0x")
    if len(s) == 4 and _HEX.fullmatch(s):
        return f"0000{s}{BASE_UUID_TAIL}"
    if len(s) == 8 and _HEX.fullmatch(s):
        return f"{s}{BASE_UUID_TAIL}"
    if _UUID36.fullmatch(s):
        return s
    raise Malformed(f"servicedatauuid {u!r}: not a UUID")


def _service_uuid(u: Any) -> str:
    if not isinstance(u, str) or len(u) > 40:
        raise Malformed("servicedatauuid: expected a UUID string")
    return _service_uuid_text(u)


def _hex(raw: Any, what: str) -> bytes:
    if not isinstance(raw, str) or len(raw) > HEX_MAX:
        raise Malformed(f"{what}: expected a hex string of at most {HEX_MAX} digits")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise Malformed(f"{what}: not hex") from None


def _decoded_ibeacon(obj: dict[str, Any]) -> dict[int, bytes]:
    """Theengs Decoder's iBeacon fields (no raw data published) back into the frame."""
    uuid, major, minor = obj.get("uuid"), obj.get("major"), obj.get("minor")
    if not (isinstance(uuid, str) and isinstance(major, int) and isinstance(minor, int)):
        return {}
    u = uuid.replace("-", "")
    if len(u) != 32 or not _HEX.fullmatch(u) or not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise Malformed("iBeacon uuid / major / minor out of range")
    power = obj.get("txpower", obj.get("power", -59))
    power = power if isinstance(power, int) and -128 <= power <= 127 else -59
    return {APPLE: ibeacon_payload(u, major, minor, power)}


def _mac(m: str) -> str:
    """ESPresense's `mac` ("dd8800003777") as a radio would print it."""
    s = m.replace(":", "").upper()
    if len(s) == 12 and _HEX.fullmatch(s):
        return ":".join(s[i : i + 2] for i in range(0, 12, 2))
    return m.upper()
