"""Networked receivers' counters in receiver health: `shelfgate run` with a Theengs source over a
real mosquitto and its web app; nodes send good, malformed, duplicated, late and
future-stamped messages; `/api/v1/state` (receivers[].network), `/metrics`
(shelfgate_receiver_dropped_total{receiver,reason}) and the retained status message
(network_receivers) each say how many of which receiver were dropped and why."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from drivers.network.health import REASONS

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, free_port, wait_exit
from .network_helpers import client, theengs_message
from .web_helpers import PASSWORD, Daemon, wait_for

BEACON = {"76": "0215426c7565436861726d426561636f6e730efe1355c5"}


def message(rx: str, i: int, ts: float) -> tuple[str, bytes]:
    topic, payload = theengs_message(
        {"rx": rx, "addr": f"DD:88:00:00:00:{i:02X}", "rssi": -60, "mfg": BEACON}
    )
    return topic, payload[:-1] + b',"ts":' + repr(round(ts, 3)).encode() + b"}"


def test_drops_per_receiver_and_reason_show_in_state_metrics_and_status(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    web = free_port()
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-health"
layout = "{ROOT / "config" / "layout.toml"}"
data_dir = "{tmp_path / "data"}"
[privacy]
secret = "test-secret-0123456789"
[mqtt]
broker = "{broker.url}"
connect_delay_max_s = 0.0
[web]
listen = "127.0.0.1:{web}"
password_file = "{tmp_path / "pw"}"
[[sources]]
uri = "theengs:mqtt://127.0.0.1:{broker.port}?clock=receiver&max_late_s=2&dedupe_ms=5000"
topic = "home/+/BTtoMQTT/#"
""")
    status = Consumer(broker.port, "shelfgate/v1/+/gw-health/status", "status-watch").start()
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            shelfgate("run", "--config", str(cfg)), cwd=ROOT, env=env(), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    dm = Daemon(proc, f"http://127.0.0.1:{web}", log)
    pub = client(broker.port, "nodes")
    try:

        def subscribed() -> bool | None:
            assert proc.poll() is None, log.read_text()
            return True if "subscribed home/+/BTtoMQTT/#" in log.read_text() else None

        wait_for("the source to subscribe", subscribed, 30)
        now = time.time()
        for i in range(20):
            pub.publish(*message("rx01", i, now))
        for i in range(7):  # each different (equal ones would be duplicates)
            pub.publish("home/rx02/BTtoMQTT/DD8800000001", b'{"id": "x%d", "rssi": "?"}' % i)
        dup = message("rx03", 1, now)
        for _ in range(5):  # one message and four copies (a bridge looping it back)
            pub.publish(*dup)
        for i in range(5):
            pub.publish(*message("rx04", i, now - 60))  # a minute late: fed past already
        for i in range(3):
            pub.publish(*message("rx05", i, now + 60))  # a clock a minute ahead
        want = {("rx02", "malformed"): 7, ("rx03", "duplicate"): 4, ("rx04", "late"): 5,
                ("rx05", "future"): 3}  # fmt: skip

        def counted() -> dict[str, dict[str, object]] | None:
            rxs = {r["id"]: r for r in dm.state()["receivers"]}
            ok = all(rxs[rx]["network"]["dropped"][why] == n for (rx, why), n in want.items())
            return rxs if ok and rxs["rx01"]["network"]["accepted"] == 20 else None

        try:
            rxs = wait_for("the drops in /api/v1/state", counted, 30)
        except AssertionError:
            print(orjson.dumps(dm.state()["receivers"]).decode())
            raise
        assert rxs["rx01"]["network"]["dropped"] == dict.fromkeys(REASONS, 0)
        metrics = dm.metrics()
        for (rx, why), n in want.items():
            key = ("shelfgate_receiver_dropped_total", (("reason", why), ("receiver", rx)))
            assert metrics[key] == n, key
        assert metrics[("shelfgate_receiver_messages_total", (("receiver", "rx01"),))] == 20
        assert metrics[("shelfgate_receiver_dropped_total", (("reason", "late"), ("receiver", "rx01")))] == 0  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 30) == 0, log.read_text()[-3000:]
        pub.disconnect()

    # the last status message (retained, offline) carries the same counters
    def final() -> dict[str, object] | None:
        with status.lock:
            last = [s for s in status.status if s.get("online") is False]
        return last[-1] if last else None

    body = wait_for("the final status", final, 10)
    validator = Draft202012Validator(
        json.loads((ROOT / "config" / "schemas" / "status.schema.json").read_text())
    )
    validator.validate(body)
    net = body["network_receivers"]
    assert isinstance(net, dict)
    for (rx, why), n in want.items():
        assert net[rx]["dropped"][why] == n, net[rx]
    assert net["rx01"]["accepted"] == 20
    status.stop()
    broker.stop()
