"""CPU per advertisement from a serial receiver to the pipeline.

    python -m benchmarks.source_cpu [--frames 100000]

A BLED112 emulator (a child process) writes gap_scan_response frames into a pty as fast as it
can; this process runs the real SerialSource (reader thread, decoder, hand-over to the event
loop) and Pipeline.feed (tag resolution, Kalman filters, zone decisions). CPU time of this process (all threads) / advertisements.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import tty

from drivers.registry import parse_uri
from drivers.serial.source import SerialSource
from drivers.source import SourceContext
from gateway.events import Identity
from gateway.layoutfile import load_layout
from gateway.pipeline import Pipeline
from positioning.tags import TagResolver
from positioning.tracker import ZoneTracker

EMULATOR = r"""
import os, sys
from drivers.serial.bgapi import bgapi_scan_response_frame
from positioning.frames import ibeacon_payload
fd, n = int(sys.argv[1]), int(sys.argv[2])
frames = [bgapi_scan_response_frame(-60 - i % 20, "AA:BB:CC:DD:EE:%02X" % (i % 50),
          bytes.fromhex("020106") + bytes([26, 0xFF, 0x4C, 0x00]) + ibeacon_payload("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, i % 50))
          for i in range(1000)]
sent = 0
while sent < n:
    os.write(fd, b"".join(frames[: min(1000, n - sent)]))
    sent += 1000
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100_000)
    a = ap.parse_args()
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    layout = load_layout("config/layout.toml")
    pipeline = Pipeline(ZoneTracker(layout), TagResolver(), Identity("s", "g", b"k" * 16))
    src = SerialSource(
        parse_uri(f"serial:{port}?protocol=bgapi&rx=rx01"),
        SourceContext(layout, time.monotonic, pipeline.resolver),
    )

    async def run() -> tuple[int, float, float]:
        n = 0
        gen = src.batches()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.3)
        os.read(master, 4096)  # the configuration commands
        child = subprocess.Popen(
            [sys.executable, "-c", EMULATOR, str(master), str(a.frames)], pass_fds=(master,)
        )
        batch = await first
        c0, w0 = time.process_time(), time.perf_counter()
        while True:
            pipeline.feed(batch)
            n += len(batch)
            if n >= a.frames:
                break
            batch = await gen.__anext__()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        child.wait()
        await gen.aclose()
        return n, cpu, wall

    n, cpu, wall = asyncio.run(run())
    print(
        f"serial BLED112 -> pipeline: {n:,} advertisements, {cpu / n * 1e6:.1f} us CPU each "
        f"({n / wall:,.0f} adv/s; a scanning radio delivers at most ~2,700/s)"
    )


if __name__ == "__main__":
    main()
