"""BLED112 (Silicon Labs BGAPI): binary frames; only gap_scan_response events are decoded."""

from __future__ import annotations

from drivers.advertisement import Advertisement

from .ad import parse_ad

BGAPI_SCAN_PARAMS = bytes.fromhex("000506074B00320001")  # interval 75, window 50, active
BGAPI_DISCOVER_OBSERVE = bytes.fromhex("0001060202")
BGAPI_END_PROCEDURE = bytes.fromhex("00000604")
BGAPI_FILTERING_DUPLICATES_OFF = bytes.fromhex("00030606000000")
BGAPI_MAX_PAYLOAD = 64  # gap_scan_response: 11 bytes + at most 31 (+ margin); larger is garbage


class BgapiDecoder:
    """BGAPI frames: 4-byte header (event bit, technology, length high bits; length low; class;
    id) then the payload. Only `gap_scan_response` events (class 6, id 0) are decoded; command
    responses are consumed; anything implausible is skipped one byte at a time."""

    def __init__(self, receiver: str = "") -> None:
        self.receiver = receiver
        self._buf = bytearray()
        self.garbage_bytes = 0
        self.frames = 0

    def feed(self, data: bytes, t: float = 0.0) -> list[Advertisement]:
        """The advertisements in `data`, heard by this decoder's receiver at time `t`."""
        buf = self._buf
        buf += data
        out: list[Advertisement] = []
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
                adv = self._scan_response(payload, t)
                if adv is None:
                    del buf[0]  # a header look-alike inside garbage: resynchronise
                    self.garbage_bytes += 1
                    continue
                out.append(adv)
            self.frames += 1
            del buf[: 4 + length]
        return out

    def _scan_response(self, p: bytes, t: float) -> Advertisement | None:
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
        return Advertisement(self.receiver, addr, rssi, mfg, svc, t, tx, name, packet_type == 4)


def bgapi_scan_response_frame(
    rssi: int, addr: str, ad: bytes, packet_type: int = 0, addr_type: int = 0
) -> bytes:
    """Encode a gap_scan_response event (for device emulators in tests and benchmarks)."""
    sender = bytes.fromhex(addr.replace(":", ""))[::-1]
    payload = bytes([rssi & 0xFF, packet_type]) + sender + bytes([addr_type, 0xFF, len(ad)]) + ad
    return bytes([0x80 | (len(payload) >> 8), len(payload) & 0xFF, 6, 0]) + payload
