"""Serial decoder throughput, frames per second for each protocol.

python -m benchmarks.decoders
"""

from __future__ import annotations

import time

from drivers.serial.bgapi import BgapiDecoder, bgapi_scan_response_frame
from drivers.serial.dwm1001 import DwmDecoder
from drivers.serial.nina import NinaDecoder
from positioning.frames import ibeacon_payload

AD = (
    bytes.fromhex("020106")
    + bytes([26, 0xFF, 0x4C, 0x00])
    + ibeacon_payload("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, 7)
)


def bench(name: str, dec: object, frame: bytes, n: int = 200_000, chunk: int = 4096) -> None:
    stream = frame * n
    t0 = time.perf_counter()
    got = 0
    for i in range(0, len(stream), chunk):
        got += len(dec.feed(stream[i : i + chunk]))  # type: ignore[attr-defined]
    dt = time.perf_counter() - t0
    assert got == n, (name, got)
    print(
        f"{name:9} {n / dt:>10,.0f} frames/s ({dt / n * 1e6:.1f} us per frame, {len(frame)} bytes each, {chunk}-byte reads)"
    )


def main() -> None:
    bench("BLED112", BgapiDecoder(), bgapi_scan_response_frame(-62, "AA:BB:CC:DD:EE:FF", AD))
    bench("NINA", NinaDecoder(), f'+UBTD:AABBCCDDEEFFp,-62,"",2,{AD.hex().upper()}\r\n'.encode())
    bench(
        "DWM1001",
        DwmDecoder(),
        b"DIST,4,AN0,0E15,1.75,4.55,2.33,1.61,AN1,1516,0.00,4.55,2.20,2.15,AN2,41B1,"
        b"1.75,0.00,2.20,4.23,AN3,089F,0.00,0.00,2.20,4.37,POS,1.49,4.02,0.78,59\r\n",
    )


if __name__ == "__main__":
    main()
