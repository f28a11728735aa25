"""`shelfgate run` against a real mosquitto: delivery, schema, broker failures, ACLs."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from gateway.outbox import Outbox, read_status

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, wait_exit

SCHEMAS = ROOT / "config" / "schemas"


def validator(name: str) -> jsonschema.Draft202012Validator:
    reg = Registry()
    for p in SCHEMAS.glob("*.json"):
        reg = reg.with_resource(p.name, Resource.from_contents(json.loads(p.read_text())))
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(schema, registry=reg)


def write_config(d: Path, broker: str, extra: str = "", min_dwell: float = 20.0) -> Path:
    cfg = d / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-test"
data_dir = "{d / "data"}"
[privacy]
secret = "test-secret-0123456789"
[pipeline]
min_dwell_s = {min_dwell}
[mqtt]
broker = "{broker}"
connect_delay_max_s = 0.0
backoff_base_s = 0.2
backoff_cap_s = 1.0
[outbox]
commit_interval_s = 0.2
{extra}
""")
    return cfg


def prefill(d: Path, n: int, kind: str = "dwell") -> list[str]:
    ob = Outbox(d / "data" / "outbox.db")
    ids = []
    batch = []
    for i in range(n):
        eid = str(uuid.UUID(int=i + 1, version=4))
        ids.append(eid)
        batch.append(
            {
                "schema": 1,
                "event_id": eid,
                "type": kind,
                "store": "hb-neumuenster",
                "gateway": "gw-test",
                "tag": "p:" + "ab" * 16,
                "zone": "fasteners",
                "start": 1767261600.0 + i,
                "end": 1767261700.0 + i,
                "duration_s": 100.0,
                "clock_synced": True,
            }
        )
        if len(batch) == 5000:
            ob.append(batch)
            batch = []
    ob.append(batch)
    ob.close()
    return ids


def start_daemon(cfg: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        shelfgate("run", "--config", str(cfg), *args),
        cwd=ROOT,
        env=env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
def empty_trace(tmp_path: Path) -> Path:
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    return p


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("trace")
    subprocess.run(
        shelfgate(
            "simulate",
            "--layout",
            str(ROOT / "config" / "layout.toml"),
            "--shoppers",
            "10",
            "--duration",
            "600",
            "--seed",
            "5",
            "--trace",
            str(d / "t.jsonl"),
        ),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return d / "t.jsonl"


def test_replay_through_broker_valid_schema(tmp_path: Path, small_trace: Path) -> None:
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    try:
        cfg = write_config(tmp_path, broker.url)
        proc = start_daemon(cfg, "--source", f"replay:{small_trace}", "--exit-when-drained")
        assert wait_exit(proc, 60) == 0
        st = read_status(tmp_path / "data" / "outbox.db")
        produced = st["next_seq"] - 1
        assert produced >= 10 and st["backlog"] == 0 and st["acked"] == produced
        assert consumer.wait_for(produced, 10)
        ev_v, msg_v, st_v = (
            validator("event.schema.json"),
            validator("events-message.schema.json"),
            validator("status.schema.json"),
        )
        for m in consumer.messages:
            msg_v.validate(m)
        for e in consumer.events:
            ev_v.validate(e)
            assert (
                e["tag"].startswith("p:")
                and e["store"] == "hb-neumuenster"
                and e["gateway"] == "gw-test"
            )
        assert sorted({e["seq"] for e in consumer.events}) == list(range(1, produced + 1))
        assert consumer.status
        for s in consumer.status:
            st_v.validate(s)
        assert consumer.status[-1]["online"] is False  # graceful stop says so, retained
    finally:
        consumer.stop()
        broker.stop()


def test_broker_killed_mid_stream(tmp_path: Path, empty_trace: Path) -> None:
    ids = prefill(tmp_path, 30000)
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    cfg = write_config(tmp_path, broker.url)
    proc = start_daemon(cfg, "--source", f"replay:{empty_trace}", "--exit-when-drained")
    db = tmp_path / "data" / "outbox.db"
    try:
        while read_status(db)["acked"] < 3000:
            time.sleep(0.02)
        broker.kill9()
        consumer.stop()
        time.sleep(0.5)
        before = read_status(db)
        time.sleep(2.0)
        during = read_status(db)
        # nothing leaves the outbox while no PUBACK can arrive
        assert during["acked"] == before["acked"]
        assert during["backlog"] + during["acked"] == len(ids)
        assert during["backlog"] > 0
        broker.start()
        consumer = Consumer(broker.port).start()
        assert wait_exit(proc, 90) == 0
        st = read_status(db)
        assert st["backlog"] == 0 and st["acked"] >= len(ids) and st["dead_letter"] == 0
    finally:
        consumer.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()


def test_broker_restart_with_persistence_consumer_gets_everything(
    tmp_path: Path, empty_trace: Path
) -> None:
    ids = prefill(tmp_path, 20000)
    broker = Broker(tmp_path, persistence=True).start()
    consumer = Consumer(broker.port, client_id="backend-persistent").start()
    cfg = write_config(tmp_path, broker.url)
    proc = start_daemon(cfg, "--source", f"replay:{empty_trace}", "--exit-when-drained")
    db = tmp_path / "data" / "outbox.db"
    try:
        while read_status(db)["acked"] < 4000:
            time.sleep(0.02)
        broker.stop()  # orderly stop: mosquitto writes its persistence file
        time.sleep(1.5)
        broker.start()
        assert wait_exit(proc, 90) == 0
        assert consumer.wait_for(len(ids), 30), (
            f"consumer has {len(consumer.event_ids())} of {len(ids)}"
        )
        assert consumer.event_ids() >= set(ids)
        dupes = len(consumer.events) - len(consumer.event_ids())
        assert dupes <= 20 * 100  # at most the in-flight window (20 messages x 100 events)
    finally:
        consumer.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()


def test_acl_denied_topic_is_never_delivered(tmp_path: Path, empty_trace: Path) -> None:
    ids = prefill(tmp_path, 50)
    acl = tmp_path / "acl"
    acl.write_text("pattern readwrite shelfgate/v1/+/+/status\n")
    broker = Broker(tmp_path, extra=f"acl_file {acl}").start()
    cfg = write_config(tmp_path, broker.url, extra="max_attempts = 2")
    proc = start_daemon(cfg, "--source", f"replay:{empty_trace}")
    db = tmp_path / "data" / "outbox.db"
    try:
        deadline = time.time() + 30
        while time.time() < deadline and read_status(db)["dead_letter"] < len(ids):
            time.sleep(0.2)
        st = read_status(db)
        assert st["acked"] == 0  # a 0x87 PUBACK is not delivery
        assert st["dead_letter"] == len(ids) and st["backlog"] == 0
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 20) == 0
        with sqlite3.connect(db) as c:
            reasons = {r[0] for r in c.execute("SELECT reason FROM dead_letter")}
        assert any("authori" in r.lower() for r in reasons)
    finally:
        broker.stop()
        if proc.poll() is None:
            proc.kill()


def test_sigterm_stops_cleanly_under_load(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    cfg = write_config(tmp_path, broker.url, min_dwell=5.0)
    proc = start_daemon(cfg, "--source", "sim:config/layout.toml?shoppers=30&speed=40&seed=3")
    db = tmp_path / "data" / "outbox.db"
    try:
        deadline = time.time() + 40
        while time.time() < deadline:
            if db.exists() and read_status(db)["acked"] >= 20:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
        st = read_status(db)
        assert st["state"]["mqtt_state"] == "stopped"
        # everything acknowledged reached the consumer; the rest is still queued, nothing lost
        time.sleep(0.5)
        assert st["acked"] + st["backlog"] == st["next_seq"] - 1
        assert len({e["seq"] for e in consumer.events}) >= st["acked"]
    finally:
        consumer.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()


def test_mqtt_311_selectable(tmp_path: Path, empty_trace: Path) -> None:
    ids = prefill(tmp_path, 500)
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    try:
        cfg = write_config(tmp_path, broker.url)
        cfg.write_text(cfg.read_text().replace("[mqtt]\n", '[mqtt]\nprotocol = "3.1.1"\n'))
        proc = start_daemon(
            cfg,
            "--source",
            f"replay:{empty_trace}",
            "--exit-when-drained",
            "--store",
            "hb-kiel",
            "--gateway",
            "gw-311",
        )
        assert wait_exit(proc, 60) == 0
        assert consumer.wait_for(len(ids), 10)
        assert {m["gateway"] for m in consumer.messages} == {"gw-311"}
        assert {m["store"] for m in consumer.messages} == {"hb-kiel"}
    finally:
        consumer.stop()
        broker.stop()
