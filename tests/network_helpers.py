"""Networked receivers played by real MQTT clients: trace lines as Theengs Gateway messages, one
paho client per receiver (its own connection, as a node has), paced at N x the trace's time."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt


def theengs_message(line: dict[str, Any], prefix: str = "home") -> tuple[str, bytes]:
    """A trace line as Theengs Gateway publishes it (ble_gateway.py detection_callback):
    `<prefix>/<rx>/BTtoMQTT/<MAC without colons>`, company id packed little endian in front of
    the manufacturer data, the 16-bit service uuid as `uuid[4:8]`."""
    msg: dict[str, Any] = {}
    for company, data in line.get("mfg", {}).items():
        msg["manufacturerdata"] = struct.pack("<H", int(company)).hex() + data
        break
    for uuid, data in line.get("svc", {}).items():
        msg["servicedatauuid"] = uuid[4:8]
        msg["servicedata"] = data
        break
    if "name" in line:
        msg["name"] = line["name"]
    msg["id"] = line["addr"]
    msg["rssi"] = line["rssi"]
    topic = f"{prefix}/{line['rx']}/BTtoMQTT/{line['addr'].replace(':', '')}"
    return topic, orjson.dumps(msg)


def client(port: int, client_id: str, threaded: bool = True) -> mqtt.Client:
    """A connected paho client; `threaded=False`: no network thread, `publish` writes to the
    socket itself (QoS 0 needs nothing back; keepalive long enough for a test)."""
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
    )
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, 300)
    deadline = time.monotonic() + 5
    if not threaded:
        while not c.is_connected():
            c.loop(0.05)
            assert time.monotonic() < deadline, "publisher could not connect"
        return c
    c.loop_start()
    while not c.is_connected():
        assert time.monotonic() < deadline, "publisher could not connect"
        time.sleep(0.01)
    return c


class TracePublisher:
    """Plays `trace` as Theengs messages at `speed` x its own time, one MQTT connection per
    receiver (a node each), written from one thread (no paho network threads competing for
    the GIL with the pacing). `started_wall` is the wall time of the first message."""

    def __init__(
        self,
        port: int,
        trace: Path,
        speed: float,
        prefix: str = "home",
        epoch: float | None = None,
        stamped: bool = False,
    ) -> None:
        """`epoch`: the wall instant from which the store's time runs `speed` x faster (the
        gateway's `epoch=`): store time at real wall time W is epoch + (W - epoch) * speed.
        `stamped`: every message carries the node's time of the advertisement (`ts`, store
        time: what a node with a good clock sends)."""
        lines = [orjson.loads(x) for x in trace.read_bytes().splitlines() if x.strip()]
        t0 = lines[0]["t"]
        self.messages = [
            ((x["t"] - t0) / speed, x["rx"], *theengs_message(x, prefix), x["t"] - t0)
            for x in lines
        ]
        self.port = port
        self.speed = speed
        self.epoch = epoch
        self.stamped = stamped
        self.clients: dict[str, mqtt.Client] = {}
        self.started_wall = 0.0
        self.started_store = 0.0  # the store time at which the trace starts (its t0)
        self.max_lag_s = 0.0  # how far behind its schedule the publisher fell (wall s)
        self.sent = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TracePublisher:
        for rx in sorted({m[1] for m in self.messages}):
            self.clients[rx] = client(self.port, f"node-{rx}", threaded=False)
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.monotonic()
        self.started_wall = time.time()
        epoch = self.started_wall if self.epoch is None else self.epoch
        self.started_store = epoch + (self.started_wall - epoch) * self.speed
        clients = self.clients
        base = self.started_store
        for at, rx, topic, payload, dt in self.messages:
            now = time.monotonic() - start
            if at > now + 0.0005:
                time.sleep(at - now)
            elif now - at > self.max_lag_s:
                self.max_lag_s = now - at
            if self.stamped:  # the node's clock: when it heard it, however late it is sent
                payload = payload[:-1] + b',"ts":' + repr(round(base + dt, 4)).encode() + b"}"
            clients[rx].publish(topic, payload, qos=0)
            self.sent += 1
        self.done.set()

    def stop(self) -> None:
        for c in self.clients.values():
            c.disconnect()


def publish_all(c: mqtt.Client, messages: Iterable[tuple[str, bytes]]) -> int:
    n = 0
    for topic, payload in messages:
        c.publish(topic, payload, qos=0)
        n += 1
    return n
