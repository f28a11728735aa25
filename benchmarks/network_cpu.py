"""CPU per advertisement for networked receivers: Theengs messages over a real mosquitto into
the pipeline, at the rate of a busy store.

    python -m benchmarks.network_cpu [--receivers 20] [--rate 300] [--seconds 20]

A child process plays `--receivers` Theengs Gateway nodes (one MQTT connection each), every one
publishing `--rate` advertisements/s (phones' iBeacon frames of `--tags` phones, 60 by default) on
`home/<rx>/BTtoMQTT/<MAC>`; mosquitto is spawned for the run. This process runs the real
`theengs:` source (paho's network thread, JSON decoding, the per-receiver guard, the hand-over
to the event loop) and `Pipeline.feed` (tag resolution, Kalman filters, zone decisions) on
`config/layout-large.toml` (20 receivers). Reported: CPU time of this process (all threads) per
advertisement, once the first second is past; and whether it kept up (nothing dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drivers.network.source import NetworkSource
from drivers.registry import open_source
from drivers.source import SourceContext
from gateway.events import Identity
from gateway.layoutfile import load_layout
from gateway.pipeline import Pipeline
from positioning.tags import TagResolver
from positioning.tracker import ZoneTracker

PI_SLOWER = (4.0, 5.0)  # a Pi 4 core against one of these machines (DESIGN.md, Budgets)

NODES = r"""
import random, struct, sys, time
import orjson
import paho.mqtt.client as mqtt
from positioning.frames import ibeacon_payload
port, receivers, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rng = random.Random(1)
uuid = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
tags = [("%02X:%02X:%02X:%02X:%02X:%02X" % tuple(rng.randrange(256) for _ in range(6)),
         "4c00" + ibeacon_payload(uuid, 1, i).hex()) for i in range(int(sys.argv[5]))]
clients = []
for r in range(receivers):
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"node{r}",
                    protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port, 300)
    while not c.is_connected():
        c.loop(0.05)
    clients.append(c)
msgs = []
for k in range(4000):
    addr, mfg = tags[k % len(tags)]
    body = orjson.dumps({"id": addr, "rssi": -55 - rng.randrange(40), "manufacturerdata": mfg})
    msgs.append((addr.replace(":", ""), body))
print("ready", flush=True)
sys.stdin.readline()
step = 0.01
per_step = receivers * rate * step
start, sent, k = time.monotonic(), 0, 0
while time.monotonic() - start < seconds:
    due = int((time.monotonic() - start) / step * per_step)
    while sent < due:
        r = sent % receivers
        mac, body = msgs[k % len(msgs)]
        clients[r].publish(f"home/rx{r + 1:02d}/BTtoMQTT/{mac}", body)
        sent += 1
        k += 1
    time.sleep(step / 2)
print(sent, flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--receivers", type=int, default=20)
    ap.add_argument("--rate", type=float, default=300.0, help="advertisements/s per receiver")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tags", type=int, default=60, help="phones in the store (60: a busy one)")
    a = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="netcpu"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.mqtt_helpers import Broker

    broker = Broker(workdir).start()
    try:
        run(a, broker.port, pipeline=False)  # the networked source alone
        run(a, broker.port, pipeline=True)  # and with the pipeline it feeds
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(a: argparse.Namespace, port: int, pipeline: bool) -> None:
    layout = load_layout("config/layout-large.toml")
    pipe = Pipeline(ZoneTracker(layout), TagResolver(), Identity("s", "g", b"k" * 16))
    ctx = SourceContext(layout, time.monotonic, pipe.resolver)
    src = open_source(f"theengs:mqtt://127.0.0.1:{port}?rate=2000&burst=4000", ctx)
    assert isinstance(src, NetworkSource)
    nodes = subprocess.Popen(
        [sys.executable, "-c", NODES, *map(str, (port, a.receivers, a.rate, a.seconds, a.tags))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert nodes.stdout is not None and nodes.stdin is not None
    assert nodes.stdout.readline().strip() == "ready"

    async def consume() -> tuple[int, float, float]:
        gen = src.batches()
        first = asyncio.ensure_future(gen.__anext__())
        while not src.connected:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert nodes.stdin is not None
        nodes.stdin.write("go\n")
        nodes.stdin.flush()
        n, counted, c0, w0 = 0, 0, 0.0, 0.0
        start = time.perf_counter()
        batch = await first
        while True:
            if pipeline:
                pipe.feed(batch)
            n += len(batch)
            now = time.perf_counter()
            if c0 == 0.0 and now - start > 1.0:  # past connection set-up and warm caches
                c0, w0, counted = time.process_time(), now, n
            if now - start > a.seconds + 0.5 or nodes.poll() is not None:
                break
            try:
                async with asyncio.timeout(2.0):
                    batch = await gen.__anext__()
            except TimeoutError:
                break
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        await gen.aclose()
        return n - counted, cpu, wall

    n, cpu, wall = asyncio.run(consume())
    sent = int(nodes.communicate(timeout=30)[0].strip() or 0)
    stats = src.stats()
    dropped = sum(st.dropped() for st in stats.values())
    target = a.receivers * a.rate
    print(
        f"{a.receivers} Theengs nodes x {a.rate:.0f} adv/s, {a.tags} phones, over mosquitto -> "
        f"{'source + pipeline' if pipeline else 'source alone'}: "
        f"{n:,} advertisements in {wall:.1f} s ({n / wall:,.0f} adv/s, target {target:,.0f}), "
        f"{cpu / n * 1e6:.1f} us CPU each = {cpu / wall * 100:.0f}% of one core here; "
        f"sent {sent:,}, dropped {dropped} (late {sum(s.late for s in stats.values())})"
    )
    us = cpu / n * 1e6
    budget = 1e6 / target / PI_SLOWER[1]  # us here that leave one Pi 4 core enough at `target`
    print(
        f"  Pi 4 ({PI_SLOWER[0]:g}-{PI_SLOWER[1]:g} x slower per core): {us * PI_SLOWER[0]:.0f}-"
        f"{us * PI_SLOWER[1]:.0f} us each, {us * PI_SLOWER[0] * target / 1e4:.0f}-"
        f"{us * PI_SLOWER[1] * target / 1e4:.0f}% of one core at {target:,.0f} adv/s; budget "
        f"{budget:.0f} us here: headroom {budget / us:.1f} x"
    )


if __name__ == "__main__":
    main()
