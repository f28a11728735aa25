"""`shelfgate scan`: record or watch what receivers hear (the trace format of DESIGN.md).

Sources are opened through the same table as `run` (drivers.registry), on one event loop; tags
are named by the pipeline's resolver. `rx=` is optional here: a radio's readings are labelled
with its `rx=`, else the port's or adapter's name."""

from __future__ import annotations

import argparse
import sys
import time
from typing import IO, TYPE_CHECKING

from positioning.errors import InputError

if TYPE_CHECKING:
    from drivers.source import Batch, Source
    from gateway.clock import Clock
    from positioning.tags import TagResolver

NETWORKED = ("theengs", "espresense")
SCANNABLE = ("bluez", "serial", "sim", *NETWORKED)


def cmd_scan(a: argparse.Namespace) -> int:
    import asyncio

    out = open(a.out, "wb") if a.out else sys.stdout.buffer  # noqa: SIM115 - closed below
    try:
        n, k = asyncio.run(_scan(a, out))
    except KeyboardInterrupt:
        n, k = -1, len(a.source)
    finally:
        if a.out:
            out.close()
    if n >= 0:
        print(f"scan: {n} records from {k} receiver(s)", file=sys.stderr)
    return 0


async def _scan(a: argparse.Namespace, out: IO[bytes]) -> tuple[int, int]:
    import asyncio

    from drivers.registry import open_source, parse_uri
    from drivers.source import SourceContext
    from gateway.clock import Clock
    from gateway.layoutfile import load_layout, scan_layout
    from positioning.tags import TagResolver

    clock = Clock()
    resolver = TagResolver()
    sources: list[Source] = []
    for uri in a.source:
        su = parse_uri(uri)
        if su.kind not in SCANNABLE:
            raise InputError(
                uri,
                "",
                "scan records receivers: expected bluez:hci0 or serial:<port>?protocol=...&rx=<id>",
            )
        rx = su.params.get("rx") or su.path.rsplit("/", 1)[-1] or "hci0"
        if su.kind in NETWORKED:  # many receivers, named by topic: the layout says which
            if a.layout is None:
                raise InputError(uri, "", "networked receivers: give --layout (their ids)")
            layout = load_layout(a.layout)
        elif su.kind == "sim":
            layout = load_layout(su.path)
        else:
            layout = scan_layout(rx)
            if "rx" not in su.params:  # label the readings with the port's or adapter's name
                uri = f"{uri}{'&' if '?' in uri else '?'}rx={rx}"
        sources.append(open_source(uri, SourceContext(layout, clock.mono, resolver)))
    count = 0

    async def pump(src: Source) -> None:
        nonlocal count
        async for batch in src.batches():
            count += _write(batch, a.jsonl, out, clock, resolver)  # type: ignore[arg-type]
            out.flush()

    tasks = [asyncio.create_task(pump(s), name=s.name) for s in sources]
    try:
        done, _ = await asyncio.wait(tasks, timeout=a.duration, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()  # a source that failed (no adapter, a port that is not there)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return count, len(sources)


def _write(batch: Batch, jsonl: bool, out: IO[bytes], clock: Clock, resolver: TagResolver) -> int:
    import orjson

    from drivers.advertisement import Advertisement
    from drivers.trace.writer import advert_json, fix_json

    off = clock.wall() - clock.mono()
    lines = []
    for r in batch:
        t = r.t + off
        if type(r) is Advertisement:
            if jsonl:
                lines.append(orjson.dumps(advert_json(r, t)) + b"\n")
            else:
                tag = resolver.resolve(r.mfg, r.svc, r.address) or "-"
                hms = time.strftime("%H:%M:%S", time.localtime(t))
                lines.append(f"{hms} {r.receiver:8} {r.address} {r.rssi:4d} dBm  {tag}\n".encode())
        else:
            lines.append(orjson.dumps(fix_json(r, t)) + b"\n")  # type: ignore[arg-type]
    out.write(b"".join(lines))
    return len(lines)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("scan", help="record what receivers hear (JSON lines) or watch it live")
    s.add_argument(
        "--source",
        action="append",
        required=True,
        help="bluez:hci0 or serial:<port>?protocol=bgapi|nina|dwm1001&rx=<receiver id> (repeatable)",
    )
    s.add_argument("--layout", help="store layout (networked receivers: their receiver ids)")
    s.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    s.add_argument("--jsonl", action="store_true", help="the trace format of DESIGN.md")
    s.add_argument("--out", help="write to this file instead of standard output")
    s.set_defaults(func=cmd_scan)
