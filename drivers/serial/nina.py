"""u-blox NINA-B1/B3 (u-connectXpress AT): `+UBTD:` discovery lines."""

from __future__ import annotations

import re

from drivers.advertisement import Advertisement

from .ad import MAX_LINE, parse_ad

UBTD = re.compile(
    rb'^\+UBTD:([0-9A-Fa-f]{12})([prPR]),(-?\d{1,3}),"((?:[^"\\]|\\.)*)",(\d),([0-9A-Fa-f]*)$'
)


class NinaDecoder:
    """`+UBTD:` lines of `AT+UBTD=4,1,...`. `firmware` 2 (data type 1 = scan response, 2 =
    advertisement) or 3 (0 = scan response, 1 = advertisement, 2 = extended)."""

    def __init__(self, firmware: int = 2, receiver: str = "") -> None:
        self.receiver = receiver
        self._buf = bytearray()
        self.firmware = firmware
        self.bad_lines = 0
        self.scan_done = 0  # "OK" lines: the scan period ended, re-issue it

    def feed(self, data: bytes, t: float = 0.0) -> list[Advertisement]:
        """The advertisements in `data`, heard by this decoder's receiver at time `t`."""
        buf = self._buf
        buf += data
        out: list[Advertisement] = []
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
            adv = self._line(line, t)
            if adv is None:
                self.bad_lines += 1
            else:
                out.append(adv)
        return out

    def _line(self, line: bytes, t: float) -> Advertisement | None:
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
        name = name or name_b.decode("utf-8", "replace") or None
        return Advertisement(self.receiver, addr, rssi, mfg, svc, t, tx, name, scan_resp)
