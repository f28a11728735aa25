"""`shelfgate scan`: record or watch what receivers hear (the trace format of DESIGN.md)."""

from __future__ import annotations

import argparse
import queue
import sys
import time
from typing import Any

import orjson

from positioning.errors import InputError
from positioning.frames import tag_id

from .clock import Clock


def cmd_scan(a: argparse.Namespace) -> int:
    from drivers.base import parse_source_uri
    from drivers.protocols import RawAdvert, UwbFix
    from drivers.serial_source import SerialReader, advert_json, fix_json

    clock = Clock()
    inbox: queue.Queue[tuple[str, list[Any], float]] = queue.Queue()
    readers: list[Any] = []
    for uri in a.source:
        su = parse_source_uri(uri)
        rx = su.params.get("rx") or su.path.rsplit("/", 1)[-1] or "hci0"
        if su.kind == "serial":
            readers.append(SerialReader(su, _deliver_to(inbox, rx, clock)))
        elif su.kind == "bluez":
            from drivers.bluez_source import BluezReader

            readers.append(BluezReader(su, _deliver_to(inbox, rx, clock)))
        else:
            raise InputError(
                uri,
                "",
                "scan records receivers: expected bluez:hci0 or serial:<port>?protocol=...&rx=<id>",
            )
    out = open(a.out, "wb") if a.out else sys.stdout.buffer  # noqa: SIM115 - closed below
    for r in readers:
        r.start()
    deadline = time.monotonic() + a.duration if a.duration else None
    n = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                rx, items, t = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            for it in items:
                if isinstance(it, RawAdvert):
                    obj = advert_json(it, rx, t)
                    if a.jsonl:
                        out.write(orjson.dumps(obj) + b"\n")
                    else:
                        tag = tag_id(it.mfg, it.svc) or "-"
                        clock_s = time.strftime("%H:%M:%S", time.localtime(t))
                        out.write(f"{clock_s} {rx:8} {it.addr} {it.rssi:4d} dBm  {tag}\n".encode())
                elif isinstance(it, UwbFix):
                    out.write(orjson.dumps(fix_json(it, rx, t)) + b"\n")
                n += 1
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        for r in readers:
            r.stop()
            if getattr(r, "error", None) is not None:
                raise r.error
        if a.out:
            out.close()
    print(f"scan: {n} records from {len(readers)} receiver(s)", file=sys.stderr)
    return 0


def _deliver_to(inbox: queue.Queue[tuple[str, list[Any], float]], rx: str, clock: Clock) -> Any:
    def deliver(items: list[Any]) -> None:  # reader thread: stamp and hand over
        inbox.put((rx, items, clock.wall()))

    return deliver


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("scan", help="record what receivers hear (JSON lines) or watch it live")
    s.add_argument(
        "--source",
        action="append",
        required=True,
        help="bluez:hci0 or serial:<port>?protocol=bgapi|nina|dwm1001&rx=<receiver id> (repeatable)",
    )
    s.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    s.add_argument("--jsonl", action="store_true", help="the trace format of DESIGN.md")
    s.add_argument("--out", help="write to this file instead of standard output")
    s.set_defaults(func=cmd_scan)
