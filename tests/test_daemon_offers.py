"""Offer catalogue over a real mosquitto (retained, replaced, invalid rejected), and offers
triggered with no broker at all."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.outbox import Outbox

from .mqtt_helpers import Broker, Consumer, free_port, wait_exit
from .test_daemon_delivery import start_daemon, write_config

TOPIC = "shelfgate/v1/hb-neumuenster/offers"


def publish_retained(port: int, payload: bytes) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(TOPIC, payload, qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def catalogue(version: int, min_dwell: float = 5.0) -> bytes:
    return json.dumps(
        {
            "version": version,
            "offers": [
                {
                    "id": f"offer-v{version}",
                    "zones": [
                        "fasteners",
                        "paint",
                        "tools",
                        "electrical",
                        "plumbing",
                        "garden",
                        "timber",
                        "lighting",
                        "tiles",
                        "flooring",
                        "hardware",
                        "adhesives",
                    ],
                    "min_dwell_s": min_dwell,
                    "period": "stay",
                }
            ],
        }
    ).encode()


def active_version(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            r = c.execute("SELECT version FROM catalogue WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        return None
    return int(r[0]) if r else None


def wait_until(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_catalogue_retained_replaced_invalid_rejected(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    publish_retained(broker.port, catalogue(1))
    consumer = Consumer(broker.port, client_id="status-watch").start()
    cfg = write_config(tmp_path, broker.url)
    db = tmp_path / "data" / "outbox.db"
    proc = start_daemon(cfg, "--source", "sim:config/layout.toml?shoppers=5&speed=5")
    try:
        assert wait_until(lambda: active_version(db) == 1), "retained catalogue v1 not taken"
        publish_retained(broker.port, catalogue(2))
        assert wait_until(lambda: active_version(db) == 2)
        publish_retained(
            broker.port,
            json.dumps({"version": 3, "offers": [{"id": "x", "zones": ["paint"]}]}).encode(),
        )
        assert wait_until(
            lambda: any((s.get("offers") or {}).get("rejected") for s in consumer.status)
        )
        rejected = [
            s["offers"]["rejected"]
            for s in consumer.status
            if (s.get("offers") or {}).get("rejected")
        ][-1]
        assert rejected["version"] == 3 and "min_dwell_s" in rejected["reason"]
        publish_retained(broker.port, b"{not json")
        publish_retained(broker.port, catalogue(1))  # older: ignored
        time.sleep(1.0)
        assert active_version(db) == 2
        assert proc.poll() is None  # poison messages did not stall or kill the daemon
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
    finally:
        consumer.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()


def test_offers_trigger_with_the_broker_down(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    ob = Outbox(tmp_path / "data" / "outbox.db")
    ob.save_catalogue(7, catalogue(7, min_dwell=5.0))  # cached from an earlier connection
    ob.close()
    cfg = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")  # nobody listens there
    proc = start_daemon(cfg, "--source", "sim:config/layout.toml?shoppers=20&speed=20&seed=3")
    db = tmp_path / "data" / "outbox.db"

    def offers_queued() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return int(
                c.execute("SELECT count(*) FROM events WHERE type = 'offer_triggered'").fetchone()[
                    0
                ]
            )

    try:
        assert wait_until(lambda: offers_queued() >= 3, 40)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
        with sqlite3.connect(db) as c:
            bodies = [
                json.loads(r[0])
                for r in c.execute("SELECT body FROM events WHERE type = 'offer_triggered'")
            ]
            caps = c.execute("SELECT count(*) FROM offer_triggers").fetchone()[0]
        assert all(b["offer_id"] == "offer-v7" and b["catalogue_version"] == 7 for b in bodies)
        assert caps >= len(bodies)  # every queued trigger's cap record committed with it
        assert all(b["tag"].startswith("p:") for b in bodies)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_catalogue_with_an_unknown_zone_is_rejected_and_a_good_one_clears_it(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port, client_id="status-watch").start()
    cfg = write_config(tmp_path, broker.url)
    db = tmp_path / "data" / "outbox.db"
    proc = start_daemon(cfg, "--source", "sim:config/layout.toml?shoppers=5&speed=5")

    def last_offers_state() -> dict[str, object]:
        with consumer.lock:
            states = [s["offers"] for s in consumer.status if s.get("offers")]
        return states[-1] if states else {}

    try:
        bad = {"version": 4, "offers": [{"id": "x", "zones": ["fastners"], "min_dwell_s": 5}]}
        publish_retained(broker.port, json.dumps(bad).encode())
        assert wait_until(lambda: bool(last_offers_state().get("rejected")))
        rejected = last_offers_state()["rejected"]
        assert isinstance(rejected, dict) and rejected["version"] == 4
        assert "'fastners' is not in the store layout" in str(rejected["reason"])
        assert active_version(db) is None
        publish_retained(broker.port, catalogue(5))
        assert wait_until(lambda: active_version(db) == 5)
        assert wait_until(lambda: last_offers_state().get("version") == 5)
        assert last_offers_state()["rejected"] is None  # the newer good catalogue cleared it
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
    finally:
        consumer.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()
