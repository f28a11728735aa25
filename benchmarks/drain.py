"""Outbox figures: insert throughput, draining a 1,000,000-event backlog to a local mosquitto
while live events keep flowing, and memory while the broker is down.

    python -m benchmarks.drain [--events 1000000] [--down-s 60]

Runs its own mosquitto on a free port; the gateway is the real `shelfgate run` process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.outbox import Outbox, read_status

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.mqtt_helpers import Broker


def prefill(db: Path, n: int) -> float:
    ob = Outbox(db, quota_bytes=4 << 30)
    t0 = time.perf_counter()
    batch = []
    for i in range(n):
        batch.append(
            {
                "schema": 1,
                "event_id": str(uuid.UUID(int=i + 1, version=4)),
                "type": "dwell",
                "store": "bench",
                "gateway": "gw-bench",
                "tag": "p:" + "ab" * 16,
                "zone": "backlog",
                "start": 1767261600.0 + i,
                "end": 1767261700.0 + i,
                "duration_s": 100.0,
                "clock_synced": True,
            }
        )
        if len(batch) == 500:  # the daemon's group commit size
            ob.append(batch)
            batch = []
    if batch:
        ob.append(batch)
    dt = time.perf_counter() - t0
    ob.close()
    return dt


def config(d: Path, broker: str, min_dwell: float = 2.0) -> Path:
    p = d / "gateway.toml"
    p.write_text(f"""[gateway]
id = "gw-bench"
store = "bench"
data_dir = "{d / "data"}"
[privacy]
secret = "bench-secret-0123456789"
[pipeline]
min_dwell_s = {min_dwell}
[mqtt]
broker = "{broker}"
connect_delay_max_s = 0.0
[outbox]
quota_mb = 4096
""")
    return p


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--down-s", type=float, default=60.0)
    a = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = d / "data" / "outbox.db"
        dt = prefill(db, a.events)
        size = db.stat().st_size / 1e6
        print(
            f"outbox insert: {a.events:,} events in {dt:.1f} s = {a.events / dt:,.0f} events/s "
            f"(group commits of 500, synchronous=FULL), database {size:.0f} MB"
        )

        broker = Broker(d).start()
        live_seen: list[float] = []
        backlog_seen = [0]
        sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

        def on_message(c: object, u: object, msg: mqtt.MQTTMessage) -> None:
            body = json.loads(msg.payload)
            for e in body["events"]:
                if e["zone"] == "backlog":
                    backlog_seen[0] += 1
                else:
                    live_seen.append(time.perf_counter())

        sub.on_message = on_message
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("shelfgate/v1/bench/gw-bench/events", qos=1)
        sub.loop_start()
        cfg = config(d, broker.url)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [
                py,
                "-m",
                "gateway.cli",
                "run",
                "--config",
                str(cfg),
                "--source",
                "sim:config/layout.toml?shoppers=40&speed=30&seed=2",
            ],
            stderr=subprocess.DEVNULL,
            env={**os.environ, "SHELFGATE_CLOCK_SYNCED": "1"},
        )
        peak = 0
        drained_at = None
        while time.perf_counter() - t0 < 600:
            time.sleep(0.5)
            peak = max(peak, rss_kib(proc.pid))
            st = read_status(db)
            if drained_at is None and st["acked"] >= a.events:
                drained_at = time.perf_counter() - t0
                break
        live_during = sum(1 for t in live_seen if t - t0 <= (drained_at or 0))
        proc.terminate()
        proc.wait(30)
        sub.loop_stop()
        broker.stop()
        if drained_at is None:
            print("drain: did not finish in 600 s")
        else:
            print(
                f"drain: {a.events:,} backlog events acknowledged in {drained_at:.1f} s "
                f"({a.events / drained_at:,.0f} events/s), peak RSS {peak / 1024:.0f} MB; "
                f"{live_during} live events delivered during the drain (not starved)"
            )

        # memory with the broker down for the whole run
        cfg2 = config(d, "mqtt://127.0.0.1:9", min_dwell=2.0)
        (d / "data" / "outbox.db").unlink()
        proc = subprocess.Popen(
            [
                py,
                "-m",
                "gateway.cli",
                "run",
                "--config",
                str(cfg2),
                "--source",
                "sim:config/layout.toml?shoppers=40&speed=30&seed=4",
            ],
            stderr=subprocess.DEVNULL,
            env={**os.environ, "SHELFGATE_CLOCK_SYNCED": "1"},
        )
        samples = []
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < a.down_s:
            time.sleep(2.0)
            samples.append(rss_kib(proc.pid))
        proc.terminate()
        proc.wait(30)
        st = read_status(db)
        half = len(samples) // 2
        print(
            f"broker down {a.down_s:.0f} s: RSS {min(samples) / 1024:.0f}-{max(samples) / 1024:.0f} MB "
            f"(first half max {max(samples[:half]) / 1024:.0f} MB, second half max "
            f"{max(samples[half:]) / 1024:.0f} MB) while the backlog grew to {st['backlog']} events"
        )


if __name__ == "__main__":
    main()
