"""A large offer catalogue: parse time, and the longest event-loop stall while the daemon takes
one from the broker.

    python -m benchmarks.catalogue [--offers 100000]

(1) `parse_catalogue` on N offers (and on N with a duplicate id at the end). (2) The real daemon
(gateway.app.Gateway) in this process on a simulated store with a local mosquitto; a probe task
sleeps 5 ms at a time and records how late it wakes, while a catalogue of N offers is published
(retained) to the gateway's offers topic and taken: the longest lateness is the longest stall.
The same probe over the seconds before the publish (after start-up) is printed beside it as the
baseline: what the loaded machine and the daemon's own work give without a catalogue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.layoutfile import load_layout
from positioning.offers import CatalogueError, parse_catalogue
from tests.mqtt_helpers import Broker

LAYOUT = "config/layout.toml"


def offers(n: int, zones: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"offer-{i}",
            "zones": [zones[i % len(zones)]],
            "min_dwell_s": (60, 120, 180, 300)[i % 4],
        }
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offers", type=int, default=100_000)
    a = ap.parse_args()
    layout = load_layout(LAYOUT)
    zones = [z.id for z in layout.zones]
    cat = {"version": 1, "offers": offers(a.offers, zones)}
    t0 = time.perf_counter()
    parse_catalogue(cat, zones)
    good = time.perf_counter() - t0
    dup = {"version": 2, "offers": [*cat["offers"][:-1], {**cat["offers"][0]}]}
    t0 = time.perf_counter()
    with contextlib.suppress(CatalogueError):
        parse_catalogue(dup, zones)
    bad = time.perf_counter() - t0
    payload = json.dumps(cat).encode()
    print(
        f"parse_catalogue: {a.offers:,} offers ({len(payload) / 1e6:.1f} MB) in {good * 1000:.0f} ms; "
        f"with a duplicate id at the end, rejected in {bad * 1000:.0f} ms"
    )
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d)).start()
        cfg = config_from_dict(
            {
                "gateway": {"data_dir": f"{d}/data"},
                "privacy": {"secret": "benchmark-secret-0123"},
                "mqtt": {"broker": broker.url, "connect_delay_max_s": 0.0},
            },
            "<benchmark>",
        )
        lateness: list[float] = []  # while the catalogue is published and taken
        baseline: list[float] = []  # the same daemon before it: the machine's own noise
        publish_at = [float("inf")]

        async def probe() -> None:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                late = time.perf_counter() - t - 0.005
                (baseline if t < publish_at[0] else lateness).append(late)

        def start_publish() -> None:
            publish_at[0] = time.perf_counter()
            asyncio.get_running_loop().run_in_executor(
                None, publish, broker.port, layout.store_id, payload
            )

        async def run() -> None:
            loop = asyncio.get_running_loop()
            task = loop.create_task(probe())
            gw = Gateway(cfg, layout, None, (f"sim:{LAYOUT}?shoppers=20&seed=1",))
            loop.call_later(6.0, start_publish)
            loop.call_later(20.0, os.kill, os.getpid(), signal.SIGTERM)
            await gw.run()
            task.cancel()
            print(f"catalogue active: version {gw.catalogue.version}")

        asyncio.run(run())
        broker.stop()
    for name, xs in (
        ("before it (baseline)", baseline[len(baseline) // 2 :]),
        ("while taking it", lateness),
    ):
        xs.sort()
        print(
            f"event loop {name}: longest stall {xs[-1] * 1000:.0f} ms, "
            f"p99 {xs[int(0.99 * (len(xs) - 1))] * 1000:.1f} ms over {len(xs)} probes"
        )


def publish(port: int, store: str, payload: bytes) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"shelfgate/v1/{store}/offers", payload, qos=1, retain=True).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


if __name__ == "__main__":
    main()
