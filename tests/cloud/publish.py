"""A plain paho publisher for crafted messages (poison, duplicates): waits for every PUBACK."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt


def publish(port: int, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=1, retain=retain) for t, p in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        c.loop_stop()
        c.disconnect()


def event(seq: int, gateway: str = "gw-x", store: str = "st-x", **over: Any) -> dict[str, Any]:
    body = {
        "schema": 1,
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{store}/{gateway}/{seq}")),
        "seq": seq,
        "type": "dwell",
        "store": store,
        "gateway": gateway,
        "tag": f"p:{seq % 7:032x}",
        "zone": "paint",
        "start": 1767261600.0 + seq,
        "end": 1767261660.0 + seq,
        "duration_s": 60.0,
        "clock_synced": True,
    }
    body.update(over)
    return body


def batch(
    events: list[dict[str, Any]], gateway: str = "gw-x", store: str = "st-x"
) -> tuple[str, bytes]:
    msg = {"schema": 1, "store": store, "gateway": gateway, "sent": 1767261700.0, "events": events}
    return f"shelfgate/v1/{store}/{gateway}/events", orjson.dumps(msg)


def status(gateway: str = "gw-x", store: str = "st-x", **over: Any) -> tuple[str, bytes]:
    body = {
        "schema": 1,
        "store": store,
        "gateway": gateway,
        "online": True,
        "version": "0.1.0",
        "time": 1767261700.0,
        "backlog": 0,
        "last_acked_seq": 0,
        "drops": {},
        "alerts": [],
    }
    body.update(over)
    return f"shelfgate/v1/{store}/{gateway}/status", orjson.dumps(body)
