"""Consumer throughput: events/s from a local mosquitto into the machine's PostgreSQL, with one
and with two `shelfgate consume` processes on one shared subscription.

    python -m benchmarks.consumer [--events 100000] [--gateways 20] [--consumers 1 2]
                                  [--pg postgresql://postgres@127.0.0.1:5432/postgres]

How: the consumers connect once (their persistent sessions join the shared group) and stop;
the whole load is published while they are away (the broker queues it in their sessions: the
publisher is not part of the figure); then they start and the clock runs from their start until
the table holds every event. A fresh database per run, dropped afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.mqtt_helpers import Broker

ROOT = Path(__file__).resolve().parent.parent


def messages(n_events: int, gateways: int, per_msg: int = 100) -> list[tuple[str, bytes]]:
    out = []
    seq = dict.fromkeys(range(gateways), 0)
    for m in range(n_events // per_msg):
        g = m % gateways
        evs = []
        for _ in range(per_msg):
            seq[g] += 1
            s = seq[g]
            evs.append(
                {
                    "schema": 1,
                    "event_id": str(uuid.uuid4()),
                    "seq": s,
                    "type": "dwell",
                    "store": "bench",
                    "gateway": f"gw{g:03d}",
                    "tag": f"p:{s % 500:032x}",
                    "zone": ("paint", "tools", "garden")[s % 3],
                    "start": 1767261600.0 + s,
                    "end": 1767261700.0 + s,
                    "duration_s": 100.0,
                    "clock_synced": True,
                }
            )
        body = {"schema": 1, "store": "bench", "gateway": f"gw{g:03d}", "sent": 1.0, "events": evs}
        out.append((f"shelfgate/v1/bench/gw{g:03d}/events", orjson.dumps(body)))
    return out


def publish_all(port: int, msgs: list[tuple[str, bytes]]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    for i in infos:
        i.wait_for_publish(60)
    c.loop_stop()
    c.disconnect()


def consumer(broker: Broker, db: str, cid: str, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "gateway.cli", "consume", "--broker", broker.url, "--db", db]
    with open(log, "ab") as fh:
        return subprocess.Popen([*args, "--client-id", cid], cwd=ROOT, stderr=fh)


def wait_log(log: Path, text: str, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(text) >= n:
            return
        time.sleep(0.05)
    raise SystemExit(f"{log}: no '{text}' after {timeout} s")


def run(n_consumers: int, msgs: list[tuple[str, bytes]], n_events: int, admin: str) -> float:
    name = f"shelfgate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as a:
        a.execute(f'CREATE DATABASE "{name}"')
    db = admin.rsplit("/", 1)[0] + "/" + name
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        broker = Broker(d, extra="max_queued_messages 10000000\nmax_queued_bytes 0").start()
        try:
            ids = [f"bench-c{i}" for i in range(n_consumers)]
            logs = [d / f"{cid}.log" for cid in ids]
            procs = [consumer(broker, db, cid, log) for cid, log in zip(ids, logs, strict=True)]
            for log in logs:
                wait_log(log, "subscribed to", 1)
            for p in procs:
                p.terminate()
                p.wait(30)
            publish_all(broker.port, msgs)
            t0 = time.perf_counter()
            procs = [consumer(broker, db, cid, log) for cid, log in zip(ids, logs, strict=True)]
            with psycopg.connect(db, autocommit=True) as c:
                while True:
                    row = c.execute("SELECT count(*) FROM shelfgate_events").fetchone()
                    if row is not None and row[0] >= n_events:
                        break
                    time.sleep(0.05)
            dt = time.perf_counter() - t0
            for p in procs:
                p.terminate()
                p.wait(30)
        finally:
            broker.stop()
            with psycopg.connect(admin, autocommit=True) as a:
                a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument("--consumers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    msgs = messages(a.events, a.gateways)
    n = len(msgs) * 100
    print(f"{n} events in {len(msgs)} messages of 100 from {a.gateways} gateways")
    for k in a.consumers:
        dt = run(k, msgs, n, a.pg)
        print(
            f"{k} consumer(s): {n / dt:,.0f} events/s into PostgreSQL "
            f"({dt:.1f} s including process start and migrations)"
        )


if __name__ == "__main__":
    main()
