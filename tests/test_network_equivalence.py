"""The same store, two ways: a simulated trace replayed from its file (`shelfgate replay`), and
the same trace published over a real mosquitto as Theengs Gateway messages by 12 networked
receivers (one MQTT connection each) at 10 x real time into `shelfgate run`. Both give the same
dwell events: same tags and zones, start and end within 2 s (trace time)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, wait_exit
from .network_helpers import TracePublisher, client

LAYOUT = ROOT / "config" / "layout.toml"  # 12 receivers, one per shelf zone
SPEED = 10.0
TOLERANCE_S = 2.0


def write_config(d: Path, port: int, query: str = "") -> Path:
    cfg = d / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-net"
layout = "{LAYOUT}"
data_dir = "{d / "data"}"
[privacy]
secret = "test-secret-0123456789"
raw_ids = true
[mqtt]
broker = "mqtt://127.0.0.1:{port}"
connect_delay_max_s = 0.0
[outbox]
commit_interval_s = 0.2

[[sources]]
uri = "theengs:mqtt://127.0.0.1:{port}?speed={SPEED:g}&dedupe_ms=0{query}"
topic = "home/+/BTtoMQTT/#"
""")
    return cfg


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, Broker]]:
    b = Broker(tmp_path).start()
    yield tmp_path, b
    b.stop()


def dwells(events: list[dict[str, Any]], origin: float) -> list[tuple[str, str, float, float]]:
    return sorted(
        (e["tag"], e["zone"], e["start"] - origin, e["end"] - origin)
        for e in events
        if e["type"] == "dwell"
    )


def replayed(d: Path, trace: Path, cfg: Path) -> list[dict[str, Any]]:
    out = d / "replayed.jsonl"
    subprocess.run(
        shelfgate("replay", str(trace), "--layout", str(LAYOUT), "--config", str(cfg),
                  "--events", str(out), "--raw-ids"),
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    return [orjson.loads(x) for x in out.read_bytes().splitlines()]


def wait_for_line(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> list[str]:
    """stderr lines up to the one containing `needle`; the rest keeps being drained."""
    assert proc.stderr is not None
    seen: list[str] = []
    found = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            seen.append(raw.decode(errors="replace"))
            if needle in seen[-1]:
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    assert found.wait(timeout), "".join(seen[-30:])
    return seen


def test_replay_and_networked_receivers_give_the_same_dwells(
    store: tuple[Path, Broker],
) -> None:
    d, broker = store
    trace = d / "trace.jsonl"
    subprocess.run(
        shelfgate("simulate", "--layout", str(LAYOUT), "--shoppers", "8", "--devices", "4",
                  "--duration", "400", "--seed", "5", "--trace", str(trace),
                  "--truth", str(d / "truth.jsonl")),
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    cfg = write_config(d, broker.port)
    t0 = orjson.loads(trace.read_bytes().split(b"\n", 1)[0])["t"]
    expected = dwells(replayed(d, trace, cfg), t0)
    assert len(expected) >= 8

    consumer = Consumer(broker.port, "shelfgate/+/+/gw-net/events").start()
    proc = subprocess.Popen(
        shelfgate("run", "--config", str(cfg)), cwd=ROOT, env=env(), stderr=subprocess.PIPE
    )
    log = wait_for_line(proc, "subscribed home/+/BTtoMQTT/#", 30)
    publisher = TracePublisher(broker.port, trace, SPEED).start()
    assert len(publisher.clients) == 12
    assert publisher.done.wait(400 / SPEED + 60)
    # the last node's last message has passed the broker when its marker comes back to us
    marker = threading.Event()
    probe = client(broker.port, "probe")
    probe.on_message = lambda c, u, m: marker.set()
    probe.subscribe("home/rx12/marker")
    time.sleep(0.2)  # the SUBACK
    publisher.clients["rx12"].publish("home/rx12/marker", b"{}")
    assert marker.wait(10)
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, 30) == 0, "".join(log[-30:])
    deadline = time.monotonic() + 15
    while len(dwells(consumer.events, 0.0)) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    publisher.stop()
    probe.disconnect()
    consumer.stop()

    got = dwells(consumer.events, publisher.started_wall)
    print(f"publisher fell behind by at most {publisher.max_lag_s * 1000:.0f} ms; "
          f"{publisher.sent} messages; {len(expected)} dwells replayed, {len(got)} over MQTT")  # fmt: skip
    assert [(tag, zone) for tag, zone, _, _ in got] == [(t, z) for t, z, _, _ in expected]
    for (tag, zone, s1, e1), (_, _, s2, e2) in zip(expected, got, strict=True):
        assert abs(s1 - s2) <= TOLERANCE_S and abs(e1 - e2) <= TOLERANCE_S, (tag, zone, s1 - s2, e1 - e2)
