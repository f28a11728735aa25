"""Sans-IO decoders for serial BLE/UWB receivers (../shared/HARDWARE.md has the protocols).

Each decoder is fed raw bytes in whatever chunks the port delivers and returns what it could
decode; the output is the same however the stream is chunked (property-tested). Garbage is
skipped and the decoder resynchronises; nothing here raises on bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIG_BASE = "-0000-1000-8000-00805f9b34fb"
MAX_LINE = 1024


@dataclass(frozen=True, slots=True)
class RawAdvert:
    """One advertisement as a receiver reports it, before a timestamp and receiver id are added."""

    addr: str
    rssi: int
    mfg: dict[int, bytes]
    svc: dict[str, bytes]
    tx: int | None = None
    name: str | None = None
    scan_response: bool = False


@dataclass(frozen=True, slots=True)
class UwbFix:
    """A DWM1001 position (metres) with the module's quality factor (0-100)."""

    x: float
    y: float
    z: float
    quality: int
    anchors: int


def parse_ad(
    data: bytes,
) -> tuple[dict[int, bytes], dict[str, bytes], int | None, str | None] | None:
    """AD structures -> (manufacturer data, service data, tx power, name); None if malformed."""
    mfg: dict[int, bytes] = {}
    svc: dict[str, bytes] = {}
    tx: int | None = None
    name: str | None = None
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0:
            break  # padding
        if i + 1 + n > len(data):
            return None
        typ = data[i + 1]
        body = data[i + 2 : i + 1 + n]
        if typ == 0xFF and len(body) >= 2:
            mfg[int.from_bytes(body[:2], "little")] = body[2:]
        elif typ == 0x16 and len(body) >= 2:
            svc[f"0000{int.from_bytes(body[:2], 'little'):04x}{SIG_BASE}"] = body[2:]
        elif typ == 0x21 and len(body) >= 16:
            u = body[:16][::-1].hex()  # 128-bit UUIDs travel little-endian
            svc[f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}"] = body[16:]
        elif typ in (0x08, 0x09):
            name = body.decode("utf-8", "replace")
        elif typ == 0x0A and len(body) == 1:
            tx = int.from_bytes(body, "little", signed=True)
        i += 1 + n
    return mfg, svc, tx, name


# ---------------------------------------------------------------- BLED112 (BGAPI)

BGAPI_SCAN_PARAMS = bytes.fromhex("000506074B00320001")  # interval 75, window 50, active
BGAPI_DISCOVER_OBSERVE = bytes.fromhex("0001060202")
BGAPI_END_PROCEDURE = bytes.fromhex("00000604")
BGAPI_FILTERING_DUPLICATES_OFF = bytes.fromhex("00030606000000")
BGAPI_MAX_PAYLOAD = 64  # gap_scan_response: 11 bytes + at most 31 (+ margin); larger is garbage


class BgapiDecoder:
    """BGAPI frames: 4-byte header (event bit, technology, length high bits; length low; class;
    id) then the payload. Only `gap_scan_response` events (class 6, id 0) are decoded; command
    responses are consumed; anything implausible is skipped one byte at a time."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.garbage_bytes = 0
        self.frames = 0

    def feed(self, data: bytes) -> list[RawAdvert]:
        buf = self._buf
        buf += data
        out: list[RawAdvert] = []
        while len(buf) >= 4:
            b0, b1, cls, cid = buf[0], buf[1], buf[2], buf[3]
            length = ((b0 & 0x07) << 8) | b1
            tech = (b0 >> 3) & 0x0F
            if tech != 0 or length > BGAPI_MAX_PAYLOAD or cls > 0x0A or cid > 0x10:
                del buf[0]
                self.garbage_bytes += 1
                continue
            if len(buf) < 4 + length:
                break
            payload = bytes(buf[4 : 4 + length])
            if b0 & 0x80 and cls == 6 and cid == 0:
                adv = self._scan_response(payload)
                if adv is None:
                    del buf[0]  # a header look-alike inside garbage: resynchronise
                    self.garbage_bytes += 1
                    continue
                out.append(adv)
            self.frames += 1
            del buf[: 4 + length]
        return out

    @staticmethod
    def _scan_response(p: bytes) -> RawAdvert | None:
        if len(p) < 11 or p[10] != len(p) - 11:
            return None
        rssi = int.from_bytes(p[0:1], "little", signed=True)
        packet_type = p[1]
        addr = ":".join(f"{b:02X}" for b in p[2:8][::-1])
        if p[8] not in (0, 1) or rssi >= 0 or packet_type not in (0, 2, 4, 6):
            return None
        ad = parse_ad(p[11:])
        if ad is None:
            return None
        mfg, svc, tx, name = ad
        return RawAdvert(addr, rssi, mfg, svc, tx, name, scan_response=packet_type == 4)


def bgapi_scan_response_frame(
    rssi: int, addr: str, ad: bytes, packet_type: int = 0, addr_type: int = 0
) -> bytes:
    """Encode a gap_scan_response event (for device emulators in tests and benchmarks)."""
    sender = bytes.fromhex(addr.replace(":", ""))[::-1]
    payload = bytes([rssi & 0xFF, packet_type]) + sender + bytes([addr_type, 0xFF, len(ad)]) + ad
    return bytes([0x80 | (len(payload) >> 8), len(payload) & 0xFF, 6, 0]) + payload


# ---------------------------------------------------------------- u-blox NINA (u-connectXpress AT)

UBTD = re.compile(
    rb'^\+UBTD:([0-9A-Fa-f]{12})([prPR]),(-?\d{1,3}),"((?:[^"\\]|\\.)*)",(\d),([0-9A-Fa-f]*)$'
)


class NinaDecoder:
    """`+UBTD:` lines of `AT+UBTD=4,1,...`. `firmware` 2 (data type 1 = scan response, 2 =
    advertisement) or 3 (0 = scan response, 1 = advertisement, 2 = extended)."""

    def __init__(self, firmware: int = 2) -> None:
        self._buf = bytearray()
        self.firmware = firmware
        self.bad_lines = 0
        self.scan_done = 0  # "OK" lines: the scan period ended, re-issue it

    def feed(self, data: bytes) -> list[RawAdvert]:
        buf = self._buf
        buf += data
        out: list[RawAdvert] = []
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE:  # no newline in sight: garbage
                    del buf[:]
                    self.bad_lines += 1
                break
            line = bytes(buf[:nl]).strip()
            del buf[: nl + 1]
            if not line:
                continue
            if line == b"OK":
                self.scan_done += 1
                continue
            if not line.startswith(b"+UBTD:"):
                continue  # other responses / URCs
            adv = self._line(line)
            if adv is None:
                self.bad_lines += 1
            else:
                out.append(adv)
        return out

    def _line(self, line: bytes) -> RawAdvert | None:
        m = UBTD.match(line)
        if m is None or len(m.group(6)) % 2:
            return None
        addr_hex, _kind, rssi_s, name_b, dtype_s, data_hex = m.groups()
        rssi = int(rssi_s)
        if not -127 <= rssi < 0:
            return None
        ad = parse_ad(bytes.fromhex(data_hex.decode()))
        if ad is None:
            return None
        mfg, svc, tx, name = ad
        addr = ":".join(addr_hex.decode().upper()[i : i + 2] for i in range(0, 12, 2))
        dtype = int(dtype_s)
        scan_resp = dtype == (1 if self.firmware < 3 else 0)
        return RawAdvert(
            addr, rssi, mfg, svc, tx, name or name_b.decode("utf-8", "replace") or None, scan_resp
        )


# ---------------------------------------------------------------- Decawave DWM1001 (PANS shell)


class DwmDecoder:
    """`lec` CSV lines: DIST,n,(ANi,id,x,y,z,range)*n[,POS,x,y,z,quality]. Lines without a
    position or with the wrong field count are dropped."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad_lines = 0

    def feed(self, data: bytes) -> list[UwbFix]:
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
