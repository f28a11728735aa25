"""Writing traces (DESIGN.md format): a simulated store's advertisements and ground truth, and
what a live receiver heard (`shelfgate scan --jsonl`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from drivers.advertisement import Advertisement, PositionFix
from positioning.storesim import StoreSimulation
from positioning.types import ZoneSegment

CHUNK_S = 30.0


def trace_lines(sim: StoreSimulation, duration: float, chunk_s: float = CHUNK_S) -> Iterator[str]:
    """Trace lines (DESIGN.md format) for sim time [0, duration), in time order."""
    t0 = sim.p.start_time
    rx_ids = [r.id for r in sim.layout.receivers]
    t = 0.0
    while t < duration:
        t1 = min(t + chunk_s, duration)
        ch = sim.chunk(t, t1)
        address, payload = sim.address, sim.payload
        for ts, ri, pid, rssi in zip(
            ch.t.tolist(), ch.rx.tolist(), ch.person.tolist(), ch.rssi.tolist(), strict=True
        ):
            yield (
                f'{{"t": {t0 + ts:.3f}, "rx": "{rx_ids[ri]}", "addr": "{address(pid, ts)}", '
                f'"rssi": {rssi}, {payload(pid, ts)}}}\n'
            )
        t = t1


def write_trace(sim: StoreSimulation, duration: float, out: IO[str]) -> int:
    n = 0
    buf: list[str] = []
    for line in trace_lines(sim, duration):
        buf.append(line)
        if len(buf) >= 4096:
            out.write("".join(buf))
            n += len(buf)
            buf.clear()
    out.write("".join(buf))
    return n + len(buf)


def write_segments(segments: list[ZoneSegment], out: IO[bytes], offset: float = 0.0) -> None:
    for s in segments:
        out.write(
            orjson.dumps(
                {
                    "tag": s.tag,
                    "zone": s.zone,
                    "start": round(s.start + offset, 3),
                    "end": round(s.end + offset, 3),
                }
            )
            + b"\n"
        )


def advert_json(adv: Advertisement, t: float) -> dict[str, Any]:
    """A trace line for an advertisement heard at wall time `t`."""
    out: dict[str, Any] = {
        "t": round(t, 3),
        "rx": adv.receiver,
        "addr": adv.address,
        "rssi": adv.rssi,
    }
    if adv.mfg:
        out["mfg"] = {str(k): v.hex() for k, v in adv.mfg.items()}
    if adv.svc:
        out["svc"] = {k: v.hex() for k, v in adv.svc.items()}
    if adv.tx is not None:
        out["tx"] = adv.tx
    if adv.name:
        out["name"] = adv.name
    return out


def fix_json(fix: PositionFix, t: float) -> dict[str, Any]:
    """A trace line for a UWB position reported at wall time `t` (ignored by replay)."""
    return {
        "t": round(t, 3),
        "rx": fix.receiver,
        "uwb": {"x": fix.x, "y": fix.y, "z": fix.z, "quality": fix.quality, "anchors": fix.anchors},
    }
