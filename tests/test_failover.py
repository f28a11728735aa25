"""Two positioning gateways of one group and one broker, hearing the same networked receivers:
each tag has one owner that sends its events; the owner is killed -9; the standby takes over
when the broker sends the owner's last will, the tag's stay goes on with its first start, and
the cloud sees one dwell. The owner's `dwell_threshold` is sent again by the standby at the
takeover (it cannot know whether the dead owner delivered it) under the same event id: a
duplicate the backend's deduplication absorbs."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, wait_exit
from .network_helpers import client, theengs_message
from .web_helpers import wait_for

LAYOUT = ROOT / "config" / "layout.toml"
BEACON = {"76": "0215426c7565436861726d426561636f6e730efe1355c5"}
LEVELS = {"rx01": -52, "rx02": -78, "rx03": -80, "rx04": -88}  # standing by rx01


def config(d: Path, gw: str, port: int) -> Path:
    cfg = d / f"{gw}.toml"
    cfg.write_text(f"""
[gateway]
id = "{gw}"
layout = "{LAYOUT}"
data_dir = "{d / gw}"
group = "hb-main"
[pipeline]
min_dwell_s = 3.0
dwell_gap_s = 3.0
[privacy]
secret = "test-secret-0123456789"
[mqtt]
broker = "mqtt://127.0.0.1:{port}"
connect_delay_max_s = 0.0
[outbox]
commit_interval_s = 0.2
[[sources]]
uri = "theengs:mqtt://127.0.0.1:{port}?clock=receiver&max_late_s=1"
topic = "home/+/BTtoMQTT/#"
""")
    return cfg


def test_the_standby_continues_the_owners_stay_and_the_cloud_sees_one_dwell(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path).start()
    cloud = Consumer(broker.port, "shelfgate/v1/#", "cloud").start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for gw in ("gw-a", "gw-b"):
        log = (tmp_path / f"{gw}.log").open("wb")
        procs[gw] = subprocess.Popen(
            shelfgate("run", "--config", str(config(tmp_path, gw, broker.port))),
            cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    node = client(broker.port, "node-tag")
    standing = threading.Event()
    standing.set()
    stop = threading.Event()

    def tag() -> None:  # one beacon standing by rx01, heard by four nodes at 10 Hz
        i = 0
        while not stop.wait(0.1):
            if not standing.is_set():
                continue
            now = time.time()
            for rx, level in LEVELS.items():
                line = {"rx": rx, "addr": "DD:88:00:00:00:01", "rssi": level - i % 3, "mfg": BEACON}
                topic, payload = theengs_message(line)
                node.publish(topic, payload[:-1] + b',"ts":%.3f}' % now)
            i += 1

    player = threading.Thread(target=tag, daemon=True)
    try:
        # both online (each sees the other's retained status)
        wait_for("both gateways online", lambda: True if len(
            {s["gateway"] for s in cloud.status if s.get("online")}) == 2 else None, 30)  # fmt: skip
        player.start()

        def threshold() -> dict[str, object] | None:
            with cloud.lock:
                got = [e for e in cloud.events if e["type"] == "dwell_threshold"]
            return got[0] if got else None

        first = wait_for("the owner's dwell_threshold", threshold, 30)
        owner = str(first["gateway"])
        standby = "gw-b" if owner == "gw-a" else "gw-a"
        with cloud.lock:
            assert {e["gateway"] for e in cloud.events} == {owner}  # one gateway sends
        killed = time.monotonic()
        procs[owner].send_signal(signal.SIGKILL)
        procs[owner].wait(10)

        def again() -> dict[str, object] | None:
            with cloud.lock:
                got = [e for e in cloud.events if e["gateway"] == standby]
            return got[0] if got else None

        resent = wait_for("the standby to take over", again, 15)
        took = time.monotonic() - killed
        print(f"standby took over {took:.2f} s after the kill -9")
        assert resent["type"] == "dwell_threshold" and resent["event_id"] == first["event_id"]
        assert resent["start"] == first["start"]  # the same stay, derived by the other gateway
        # the tag stands on a few seconds more, then leaves: the standby ends the stay
        wait_for("a few seconds more of the stay", lambda: True if time.monotonic() - killed > 3
                 else None, 10)  # fmt: skip
        standing.clear()

        def dwell() -> list[dict[str, object]] | None:
            with cloud.lock:
                got = [e for e in cloud.events if e["type"] == "dwell"]
            return got or None

        dwells = wait_for("the dwell", dwell, 40)
        time.sleep(1.0)  # nothing else is on its way (the owner is dead; the standby sent it)
        with cloud.lock:
            dwells = [e for e in cloud.events if e["type"] == "dwell"]
            ids = {e["event_id"] for e in cloud.events}
            messages = len(cloud.events)
        assert len(dwells) == 1, dwells
        d = dwells[0]
        assert d["gateway"] == standby and d["start"] == first["start"], (d, first)
        assert float(d["end"]) - float(d["start"]) > 5.0  # across the failover, not a new stay
        # the cloud got the threshold twice under one id: deduplicated, one threshold, one dwell
        assert messages == 3 and len(ids) == 2
    finally:
        stop.set()
        node.disconnect()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                wait_exit(p, 20)
        cloud.stop()
        broker.stop()
