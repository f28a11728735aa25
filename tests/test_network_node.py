"""shelfgate nodes (`shelfgate run --role node`) and the gateway's `shelfgate:` source, against a
real mosquitto: a node's radios (a simulated store) reach the gateway's pipeline, every
advertisement it sent is counted in, and the dwells come out; batches lost, repeated, malformed
or naming strangers are counted per node; each advertisement is placed in time by its age on the
node's monotonic clock."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from drivers.advertisement import Advertisement
from drivers.network.node import NodeClock, decode_batch, encode_batch
from drivers.network.source import NodeSource

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, free_port, wait_exit
from .network_helpers import client
from .test_network_source import BEACON, collect, source
from .web_helpers import PASSWORD, Daemon, wait_for

LAYOUT = ROOT / "config" / "layout.toml"
TOPIC = "shelfgate/v1/+/nodes/+/adv"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def adv(rx: str, i: int, t: float) -> Advertisement:
    mfg = {76: bytes.fromhex(BEACON["76"])}
    return Advertisement(rx, f"DD:88:00:00:00:{i:02X}", -60, mfg, {}, t)


def test_the_batch_format_round_trips_with_ages_on_the_nodes_clock() -> None:
    sent = NodeClock(mono=100.0, wall=1767261652.5, synced=True)
    advs = [adv("rx01", 1, 99.5), adv("rx02", 2, 99.9), adv("rx01", 3, 100.0)]
    body = encode_batch("pi-2", "b00t", 7, advs, sent)
    obj = orjson.loads(body)
    assert obj["rx"] == ["rx01", "rx02"] and len(obj["f"]) == 1  # listed once, by index
    assert [r[0] for r in obj["a"]] == [500, 100, 0]  # ages, ms
    b = decode_batch(obj)
    assert (b.node, b.boot, b.seq, b.sent) == ("pi-2", "b00t", 7, sent)
    assert [(age, rx, a, r, f[0]) for age, rx, a, r, f in b.rows] == [
        (0.5, "rx01", advs[0].address, -60, advs[0].mfg),
        (0.1, "rx02", advs[1].address, -60, advs[1].mfg),
        (0.0, "rx01", advs[2].address, -60, advs[2].mfg),
    ]


def test_lost_repeated_malformed_and_strangers_are_counted_per_node(broker: Broker) -> None:
    src = source(broker.port, kind="shelfgate", query="?max_late_s=0.3", topic=TOPIC)
    assert isinstance(src, NodeSource)
    pub = client(broker.port, "node-pi-2")
    topic = "shelfgate/v1/hb/nodes/pi-2/adv"

    def publish() -> None:
        now = time.monotonic()
        clock = NodeClock(now, time.time(), False)
        # batch 1: two advertisements heard 0.8 s and 0.2 s before it was sent
        pub.publish(topic, encode_batch("pi-2", "b1", 1, [adv("rx01", 1, now - 0.8),
                                                         adv("rx02", 2, now - 0.2)], clock))  # fmt: skip
        pub.publish(topic, encode_batch("pi-2", "b1", 1, [adv("rx01", 9, now)], clock))  # again
        pub.publish(topic, encode_batch("pi-2", "b1", 4, [adv("kitchen", 3, now)], clock))
        pub.publish(topic, b'{"v": 1, "node": "pi-2"}')
        pub.publish(topic, encode_batch("pi-2", "b1", 5, [adv("rx03", 4, now)], clock))

    got, _ = asyncio.run(collect(src, lambda g: len(g) >= 3, publish))
    pub.disconnect()
    nodes = src.nodes.stats["pi-2"]
    assert (nodes.accepted, nodes.duplicate, nodes.lost, nodes.malformed) == (3, 1, 2, 1), nodes
    assert src.guard.unknown == {"kitchen": 1}
    assert [a.receiver for a in got] == ["rx01", "rx02", "rx03"]  # in time order
    # placed by their ages: 0.6 s apart, whatever the network did
    assert abs((got[1].t - got[0].t) - 0.6) < 0.005, [a.t for a in got]
    counters = {c.receiver: c for c in src.counters()}
    assert counters["node:pi-2"].dropped["lost"] == 2
    assert counters["rx01"].accepted == 1 and counters["rx03"].accepted == 1


def test_a_node_forwards_its_radios_and_the_gateway_decides_the_dwells(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    web = free_port()
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    common = f"""
[privacy]
secret = "test-secret-0123456789"
[mqtt]
broker = "{broker.url}"
connect_delay_max_s = 0.0
"""
    node_cfg = tmp_path / "node.toml"
    node_cfg.write_text(f"""
[gateway]
id = "pi-2"
layout = "{LAYOUT}"
data_dir = "{tmp_path / "node"}"
{common}
[[sources]]
uri = "sim:{LAYOUT}?shoppers=6&devices=2&seed=4"
""")
    gw_cfg = tmp_path / "gateway.toml"
    gw_cfg.write_text(f"""
[gateway]
id = "gw-main"
layout = "{LAYOUT}"
data_dir = "{tmp_path / "data"}"
[pipeline]
min_dwell_s = 5.0
{common}
[outbox]
commit_interval_s = 0.2
[web]
listen = "127.0.0.1:{web}"
password_file = "{tmp_path / "pw"}"
[[sources]]
uri = "shelfgate:mqtt://127.0.0.1:{broker.port}"
topic = "{TOPIC}"
""")
    consumer = Consumer(broker.port, "shelfgate/v1/#", "backend-node").start()
    logs = [tmp_path / "gw.log", tmp_path / "node.log"]
    procs = []

    def start(cfg: Path, log: Path, *role: str) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                shelfgate("run", "--config", str(cfg), *role), cwd=ROOT, env=env(), stdout=out,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
        return procs[-1]

    gw = start(gw_cfg, logs[0])
    dm = Daemon(gw, f"http://127.0.0.1:{web}", logs[0])
    try:
        # the node starts once the gateway listens (QoS 0: nothing waits at the broker for it)
        wait_for("the gateway to subscribe", lambda: True if f"subscribed {TOPIC}" in
                 logs[0].read_text() else None, 30)  # fmt: skip
        node = start(node_cfg, logs[1], "--role", "node")

        def threshold() -> bool | None:
            assert gw.poll() is None, logs[0].read_text()
            assert node.poll() is None, logs[1].read_text()
            with consumer.lock:
                return (
                    True if any(e["type"] == "dwell_threshold" for e in consumer.events) else None
                )

        wait_for("a dwell of the node's store at the gateway", threshold, 60)
        zones = {z["id"] for z in dm.state()["zones"]}
        with consumer.lock:
            assert {e["zone"] for e in consumer.events} <= zones
        node.send_signal(signal.SIGTERM)
        assert wait_exit(node, 20) == 0, logs[1].read_text()

        def final() -> dict[str, object] | None:
            with consumer.lock:
                last = [s for s in consumer.status if s.get("node") == "pi-2"]
            return last[-1] if last and last[-1]["online"] is False else None

        status = wait_for("the node's last status", final, 10)
        sent = status["sent"]
        assert isinstance(sent, int) and sent > 100 and status["dropped"] == 0
        assert status["heard"] == sent  # all its radios heard went out

        def counted() -> int | None:
            got = sum(r.get("network", {}).get("accepted", 0) for r in dm.state()["receivers"])
            return got if got == sent else None

        wait_for(f"the gateway to count all {sent} advertisements", counted, 10)
        m = dm.metrics()
        assert m[("shelfgate_receiver_dropped_total", (("reason", "lost"), ("receiver", "node:pi-2")))] == 0  # fmt: skip
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                wait_exit(p, 20)
        consumer.stop()
        broker.stop()
