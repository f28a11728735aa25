"""The shelfgate node format (sans-IO): what `shelfgate run --role node` publishes on
`<prefix>/<store>/nodes/<node>/adv` (QoS 0) and the `shelfgate:` source decodes.

One message is one batch of what the node's radios heard (every 100 ms, or sooner at 2,000
advertisements), compact: receiver ids and frames are listed once per batch and referred to by
index, and each advertisement carries its age on the node's monotonic clock when the batch was
sent, not a time of its own:

    {"v": 1, "node": "pi-2", "boot": "3f9c1a2b", "seq": 1841,
     "sent": {"mono": 5123.4081, "wall": 1767261652.7062, "synced": true},
     "rx": ["rx13", "rx14"],
     "f": [{"mfg": {"76": "0215f7826da6...c5"}}, {"svc": {"0000feaa-...": "00e2..."}}],
     "a": [[412, 0, "78:1E:3E:58:64:D6", -71, 0], [37, 1, "C2:00:11:22:33:44", -80, 1]]}

- `boot`: random per node start; `seq`: the batch's number since then (1, 2, ...): a gap is a
  batch lost on the way, a repeat a duplicate.
- `sent`: the node's clocks when it sent the batch: monotonic seconds, wall seconds, and whether
  its wall clock is synchronised (NTP / systemd-timesyncd).
- `a`: `[age_ms, rx index, address, rssi, frame index]`; age = sent.mono - when heard (ms).
- `f`: frames in the trace format's members (`mfg`: company id in decimal -> hex of the bytes
  after it; `svc`: 128-bit UUID -> hex).

Time on the gateway: a node's monotonic clock measures how long each advertisement waited on
the node, whatever its wall clock says, so t = arrival - age (the network's delay is the only
error, ~ms on a store LAN); with `clock=receiver` and `sent.synced`, the node's wall time is
used instead (sent.wall - age).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from drivers.advertisement import RSSI_MAX, RSSI_MIN, Advertisement

from .messages import Malformed

VERSION = 1
MAX_ROWS = 20_000  # advertisements in one batch (a flood is refused as malformed)
Frame = tuple[Mapping[int, bytes], Mapping[str, bytes]]


@dataclass(frozen=True, slots=True)
class NodeClock:
    mono: float
    wall: float
    synced: bool


@dataclass(frozen=True, slots=True)
class NodeBatch:
    """One decoded batch: rows of (age s, receiver id, address, rssi, frame)."""

    node: str
    boot: str
    seq: int
    sent: NodeClock
    rows: Sequence[tuple[float, str, str, int, Frame]]


def encode_batch(
    node: str, boot: str, seq: int, advs: Sequence[Advertisement], sent: NodeClock
) -> bytes:
    """A batch of a node's advertisements (their `t` on the node's monotonic clock)."""
    rx_index: dict[str, int] = {}
    frames: dict[tuple[Any, ...], int] = {}
    rows = []
    for a in advs:
        ri = rx_index.setdefault(a.receiver, len(rx_index))
        key = (tuple(a.mfg.items()), tuple(a.svc.items()))
        fi = frames.setdefault(key, len(frames))
        age = max(0, round((sent.mono - a.t) * 1000.0))
        rows.append((age, ri, a.address, a.rssi, fi))
    f = []
    for mfg, svc in frames:
        entry: dict[str, dict[str, str]] = {}
        if mfg:
            entry["mfg"] = {str(c): b.hex() for c, b in mfg}
        if svc:
            entry["svc"] = {u: b.hex() for u, b in svc}
        f.append(entry)
    return orjson.dumps(
        {
            "v": VERSION,
            "node": node,
            "boot": boot,
            "seq": seq,
            "sent": {
                "mono": round(sent.mono, 4),
                "wall": round(sent.wall, 4),
                "synced": sent.synced,
            },
            "rx": list(rx_index),
            "f": f,
            "a": rows,
        }
    )


def decode_batch(obj: Any) -> NodeBatch:
    """A node's batch (parsed JSON), or `Malformed` with the field that is wrong."""
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    if obj.get("v") != VERSION:
        raise Malformed(f"v: expected {VERSION}, got {obj.get('v')!r}")
    node, boot, seq = obj.get("node"), obj.get("boot"), obj.get("seq")
    if not isinstance(node, str) or not isinstance(boot, str) or len(boot) > 64:
        raise Malformed("node / boot: expected strings")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise Malformed("seq: expected a positive whole number")
    s = obj.get("sent")
    if not isinstance(s, dict) or not _num(s.get("mono")) or not _num(s.get("wall")):
        raise Malformed("sent: expected {mono, wall, synced}")
    sent = NodeClock(float(s["mono"]), float(s["wall"]), s.get("synced") is True)
    rx, f, a = obj.get("rx"), obj.get("f"), obj.get("a")
    if not isinstance(rx, list) or not all(isinstance(r, str) and len(r) <= 64 for r in rx):
        raise Malformed("rx: expected a list of receiver ids")
    if not isinstance(f, list) or not isinstance(a, list) or len(a) > MAX_ROWS:
        raise Malformed(f"f / a: expected lists (at most {MAX_ROWS} advertisements)")
    frames = [_frame(orjson.dumps(x) if not isinstance(x, dict) else _key(x)) for x in f]
    rows = []
    for row in a:
        if not isinstance(row, list) or len(row) != 5:
            raise Malformed("a: expected rows [age_ms, rx, address, rssi, frame]")
        age, ri, addr, rssi, fi = row
        if not (isinstance(age, int) and 0 <= age < 3_600_000):
            raise Malformed(f"a: age {age!r}: expected milliseconds")
        if not (isinstance(ri, int) and 0 <= ri < len(rx)):
            raise Malformed(f"a: receiver index {ri!r} out of range")
        if not (isinstance(fi, int) and 0 <= fi < len(frames)):
            raise Malformed(f"a: frame index {fi!r} out of range")
        if not isinstance(addr, str) or not 0 < len(addr) <= 64:
            raise Malformed("a: expected an address")
        if not (isinstance(rssi, int) and RSSI_MIN <= rssi <= RSSI_MAX):
            raise Malformed(f"a: rssi {rssi!r} out of range")
        rows.append((age / 1000.0, rx[ri], addr, rssi, frames[fi]))
    return NodeBatch(node, boot, seq, sent, rows)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) < 1e11


def _key(x: dict[str, Any]) -> bytes:
    return orjson.dumps(x, option=orjson.OPT_SORT_KEYS)


@lru_cache(maxsize=4096)
def _frame(raw: bytes) -> Frame:
    """A frame entry (its JSON, the cache key) as bytes."""
    x = orjson.loads(raw)
    if not isinstance(x, dict):
        raise Malformed("f: expected objects {mfg, svc}")
    mfg, svc = x.get("mfg", {}), x.get("svc", {})
    if not isinstance(mfg, dict) or not isinstance(svc, dict) or len(mfg) + len(svc) > 8:
        raise Malformed("f: mfg / svc: expected objects")
    try:
        m = {int(k): bytes.fromhex(v) for k, v in mfg.items() if 0 <= int(k) <= 0xFFFF}
        v = {str(k): bytes.fromhex(b) for k, b in svc.items()}
    except (ValueError, TypeError):
        raise Malformed("f: expected company ids and hex") from None
    return m, v
