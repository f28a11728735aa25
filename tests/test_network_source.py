"""Networked-receiver sources against a real mosquitto (one per test) and real MQTT clients:
what reaches the pipeline, and what is counted and dropped: malformed, oversized, flooding,
duplicated and late messages, receivers not in the layout; the event loop never stalls."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from drivers.advertisement import Advertisement
from drivers.network.source import NetworkSource
from drivers.registry import open_source
from drivers.source import PlainSpec, SourceContext
from gateway.layoutfile import load_layout
from positioning.tags import TagResolver

from .conftest import ROOT
from .mqtt_helpers import Broker
from .network_helpers import client, theengs_message

BEACON = {"76": "0215426c7565436861726d426561636f6e730efe1355c5"}  # BlueCharm, rx-independent


def line(rx: str, i: int, rssi: int = -70) -> dict[str, object]:
    return {
        "rx": rx,
        "addr": f"DD:88:00:00:{i // 256:02X}:{i % 256:02X}",
        "rssi": rssi,
        "mfg": BEACON,
    }


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def source(
    port: int, kind: str = "theengs", query: str = "", topic: str | None = None
) -> NetworkSource:
    ctx = SourceContext(
        load_layout(str(ROOT / "config" / "layout.toml")), time.monotonic, TagResolver()
    )
    src = open_source(PlainSpec(f"{kind}:mqtt://127.0.0.1:{port}{query}", topic=topic), ctx)
    assert isinstance(src, NetworkSource)
    return src


async def collect(
    src: NetworkSource,
    until: Callable[[list[Advertisement]], bool],
    publish: Callable[[], None],
    timeout: float = 20.0,
) -> tuple[list[Advertisement], float]:
    """Runs the source on this loop while `publish` runs on a thread; returns what it yielded
    and the most CPU the loop's thread spent between two 5 ms ticks: work done on the loop (a
    stall of ours). Wall-clock gaps also include the other threads' share of the GIL and this
    shared machine's load; the longest is printed."""
    got: list[Advertisement] = []
    gaps = [0.0, 0.0]

    async def ticker() -> None:
        last, cpu = time.monotonic(), time.thread_time()
        while True:
            await asyncio.sleep(0.005)
            now, cpu_now = time.monotonic(), time.thread_time()
            gaps[0] = max(gaps[0], cpu_now - cpu)
            gaps[1] = max(gaps[1], now - last)
            last, cpu = now, cpu_now

    async def pump() -> None:
        async for batch in src.batches():
            got.extend(batch)

    tasks = [asyncio.create_task(ticker()), asyncio.create_task(pump())]
    await wait_connected(src)
    await asyncio.get_running_loop().run_in_executor(None, publish)
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"loop: longest gap {gaps[1] * 1000:.0f} ms wall, {gaps[0] * 1000:.1f} ms CPU")
    return got, gaps[0]


async def wait_connected(src: NetworkSource) -> None:
    deadline = time.monotonic() + 10
    while not src.connected:
        assert time.monotonic() < deadline, "the source never subscribed"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the SUBACK is on its way


def test_poison_floods_and_strangers_are_counted_and_the_loop_never_stalls(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    src = source(broker.port, query="?rate=500&burst=1000")
    pub = client(broker.port, "poison")

    def publish() -> None:
        for i in range(300):
            pub.publish("home/rx02/BTtoMQTT/X", b"{not json" + bytes([i % 256]))
        for i in range(100):
            pub.publish(
                "home/rx02/BTtoMQTT/X",
                orjson.dumps({"id": f"A{i}", "rssi": -60, "manufacturerdata": "zz"}),
            )
        for _ in range(10):
            pub.publish("home/rx03/BTtoMQTT/X", b'{"id":"' + b"A" * 300_000 + b'"}')
        for i in range(1000):  # one stranger, many messages; then many strangers
            pub.publish(*theengs_message(line("kitchen", i)))
        for i in range(400):
            pub.publish(*theengs_message(line(f"node{i}", i)))
        for i in range(20_000):  # a node gone mad, as fast as paho sends
            pub.publish(*theengs_message(line("rx04", i)))
        for i in range(200):  # and an honest node, after all that
            pub.publish(*theengs_message(line("rx01", i)))

    def settled(got: list[Advertisement]) -> bool:
        return sum(a.receiver == "rx01" for a in got) >= 200

    got, gap = asyncio.run(collect(src, settled, publish))
    stats = src.stats()
    resolver = TagResolver()
    honest = [a for a in got if a.receiver == "rx01"]
    assert len(honest) == 200
    assert {resolver.resolve(a.mfg, a.svc, a.address) for a in honest} == {
        "ibeacon:426c7565-4368-6172-6d42-6561636f6e73:3838:4949"
    }
    assert stats["rx02"].malformed == 400 and stats["rx02"].accepted == 0
    assert stats["rx03"].oversized == 10
    flood = stats["rx04"]
    assert flood.rate_limited > 10_000, flood
    assert flood.accepted + flood.rate_limited + flood.duplicate == 20_000
    assert {a.receiver for a in got} == {"rx01", "rx04"}
    # strangers: each reported once, remembered up to a bound, never used
    assert src.guard.unknown["kitchen"] == 1000
    assert len(src.guard.unknown) <= 257
    strangers = [r.getMessage() for r in caplog.records if "not in the layout" in r.getMessage()]
    assert sum("'kitchen'" in m for m in strangers) == 1
    assert len(strangers) <= 11  # ten named, then one line for the rest
    assert sum("rx02 sent a malformed" in r.getMessage() for r in caplog.records) == 1
    assert sum("rx04 sends more than" in r.getMessage() for r in caplog.records) >= 1
    assert gap < 0.1, f"the event loop worked {gap * 1000:.0f} ms without a break"
    pub.disconnect()


def test_duplicates_and_late_batches_are_dropped_and_counted(broker: Broker) -> None:
    src = source(broker.port, query="?max_late_s=0.5&dedupe_ms=300")
    pub = client(broker.port, "dups")

    def publish() -> None:
        topic, payload = theengs_message(line("rx05", 1))
        for _ in range(3):  # one message and two copies, back to back (a bridge, a retry)
            pub.publish(topic, payload)
        pub.publish(*theengs_message(line("rx05", 2)))

    async def run() -> tuple[list[Advertisement], list[Advertisement]]:
        first, _ = await collect(src, lambda got: len(got) >= 2, publish)
        # now the loop stalls for 1.5 s (a blocking call somewhere) while rx06 delivers
        got: list[Advertisement] = []

        async def pump() -> None:
            async for batch in src.batches():
                got.extend(batch)

        task = asyncio.create_task(pump())
        await wait_connected(src)
        node = threading.Thread(
            target=lambda: [pub.publish(*theengs_message(line("rx06", i))) for i in range(50)]
        )
        node.start()  # rx06 delivers while the loop is blocked (deliberately, below)
        time.sleep(1.5)
        node.join()
        for i in range(50, 60):
            pub.publish(*theengs_message(line("rx06", i)))
        deadline = time.monotonic() + 10
        while len(got) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return first, got

    first, later = asyncio.run(run())
    stats = src.stats()
    assert len(first) == 2 and stats["rx05"].duplicate == 2
    assert stats["rx06"].late == 50, stats["rx06"]
    assert len(later) == 10 and stats["rx06"].accepted == 60
    pub.disconnect()


def test_espresense_rooms_are_receivers_and_sub_reports_are_ignored(broker: Broker) -> None:
    src = source(broker.port, kind="espresense")
    pub = client(broker.port, "espresense-node")
    ident = "iBeacon:426c7565-4368-6172-6d42-6561636f6e73-3838-4949"
    body = orjson.dumps(
        {"mac": "dd8800003777", "id": ident, "rssi@1m": -59, "rssi": -81.10, "rxAdj": 0}
    )

    def publish() -> None:
        pub.publish(f"espresense/devices/{ident}/rx07", body)
        pub.publish(f"espresense/devices/{ident}/rx07/battery", b'{"battery":87}')
        pub.publish(f"espresense/devices/{ident}/office", body)
        pub.publish(f"espresense/devices/{ident}/rx08", body)

    got, _ = asyncio.run(collect(src, lambda got: len(got) >= 2, publish))
    assert [(a.receiver, a.rssi) for a in got] == [("rx07", -81), ("rx08", -81)]
    r = TagResolver()
    assert {r.resolve(a.mfg, a.svc, a.address) for a in got} == {
        "ibeacon:426c7565-4368-6172-6d42-6561636f6e73:3838:4949"
    }
    assert src.ignored == 1 and src.guard.unknown == {"office": 1}
    pub.disconnect()


def test_sources_take_topic_and_broker_credentials_and_say_what_is_wrong(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_config

    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    good = tmp_path / "good.toml"
    good.write_text(f"""
[[sources]]
uri = "espresense:mqtts://broker.example.com:8883"
topic = "espresense/devices/#"
username = "gateway"
password_file = "{pw}"
""")
    spec = load_config(good).sources[0]
    assert (spec.topic, spec.username, spec.password_file) == (
        "espresense/devices/#",
        "gateway",
        str(pw),
    )
    layout = load_layout(str(ROOT / "config" / "layout.toml"))
    src = open_source(spec, SourceContext(layout, time.monotonic, TagResolver()))
    assert isinstance(src, NetworkSource)
    assert (src.settings.tls, src.settings.password, src.topic) == (
        True,
        "s3cret",
        "espresense/devices/#",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("""
[[sources]]
uri = "theengs:mqtt://127.0.0.1:1883"
topik = "home/+/BTtoMQTT/#"
ca_file = "/nonexistent/ca.pem"
""")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    lines = e.value.lines
    assert any(":4: sources[0].topik: unknown key" in x for x in lines), lines
    assert any(
        ":5: sources[0].ca_file: file /nonexistent/ca.pem does not exist" in x for x in lines
    ), lines
    with pytest.raises(Exception, match="plaintext"):
        open_source(
            PlainSpec("theengs:mqtt://10.0.0.5:1883"),
            SourceContext(layout, time.monotonic, TagResolver()),
        )
    with pytest.raises(Exception, match="expected a \\+ level"):
        open_source(
            PlainSpec("theengs:mqtt://127.0.0.1:1883", topic="home/node1/BTtoMQTT/#"),
            SourceContext(layout, time.monotonic, TagResolver()),
        )


def test_check_listens_and_names_heard_silent_and_unknown_receivers(
    broker: Broker, tmp_path: Path
) -> None:
    import subprocess

    from .conftest import shelfgate
    from .mqtt_helpers import env

    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
layout = "{ROOT / "config" / "layout.toml"}"
data_dir = "{tmp_path / "data"}"
[mqtt]
broker = "{broker.url}"
[[sources]]
uri = "theengs:mqtt://127.0.0.1:{broker.port}"
topic = "home/+/BTtoMQTT/#"
""")
    pub = client(broker.port, "nodes")
    stop = threading.Event()

    def nodes() -> None:
        i = 0
        while not stop.wait(0.05):
            pub.publish(*theengs_message(line("rx01", i)))
            pub.publish(*theengs_message(line("kitchen", i)))
            pub.publish("home/rx02/BTtoMQTT/X", b"{broken %d" % i)
            i += 1

    t = threading.Thread(target=nodes)
    t.start()
    try:
        res = subprocess.run(
            shelfgate("check", "--config", str(cfg)),
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
    finally:
        stop.set()
        t.join()
        pub.disconnect()
    out = res.stdout
    assert "receiver(s) heard in 5 s (rx01 " in out, out
    assert "silent on home/+/BTtoMQTT/#: rx02, rx03" in out, out
    assert "nodes not in the layout (not used): kitchen (" in out, out
    assert "receiver rx02 dropped " in out and " malformed" in out, out
    # and a broker that is not there is a failure in plain words
    cfg.write_text(
        cfg.read_text().replace(f'127.0.0.1:{broker.port}"\ntopic', '127.0.0.1:1"\ntopic')
    )
    res = subprocess.run(
        shelfgate("check", "--config", str(cfg)),
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert res.returncode == 1 and "no connection to the broker 127.0.0.1:1" in res.stdout, (
        res.stdout
    )
