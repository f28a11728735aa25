"""What the serial decoders share: the advertisement as a receiver reports it, and the AD
structure parser.

Each decoder (bgapi, nina, dwm1001; ../shared/HARDWARE.md has the protocols) is sans-IO: fed raw
bytes in whatever chunks the port delivers, it returns what it could decode; the output is the
same however the stream is chunked (property-tested). Garbage is skipped and the decoder
resynchronises; nothing in them raises on bad input.
"""

from __future__ import annotations

SIG_BASE = "-0000-1000-8000-00805f9b34fb"
MAX_LINE = 1024


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
