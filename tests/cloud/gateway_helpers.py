"""A real gateway for the cloud tests: `shelfgate run` replaying a trace, with a backlog
prefilled into its real outbox (gateway.outbox.Outbox), so one run publishes thousands of
events and keeps publishing live ones while brokers and consumers are killed."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

from gateway.outbox import Outbox, read_status
from tests.conftest import ROOT, shelfgate
from tests.mqtt_helpers import env

STORE = "hb-neumuenster"


def write_config(d: Path, broker: str, gateway: str = "gw-test", extra: str = "") -> Path:
    cfg = d / f"{gateway}.toml"
    cfg.write_text(f"""
[gateway]
id = "{gateway}"
store = "{STORE}"
layout = "{ROOT / "config" / "layout.toml"}"
data_dir = "{d / gateway}"
[privacy]
secret = "test-secret-0123456789"
[pipeline]
min_dwell_s = 20.0
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


def prefill(d: Path, n: int, gateway: str = "gw-test", tags: int = 50) -> None:
    """n dwell events queued in the gateway's outbox (seq 1..n), as the daemon would have."""
    ob = Outbox(d / gateway / "outbox.db")
    zones = ("fasteners", "paint", "garden", "tools")
    batch = []
    for i in range(n):
        batch.append(
            {
                "schema": 1,
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{gateway}/{i}")),
                "type": "dwell",
                "store": STORE,
                "gateway": gateway,
                "tag": f"p:{i % tags:032x}",
                "zone": zones[i % len(zones)],
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


def sim_source(seconds: float, speed: float = 40.0, shoppers: int = 20, seed: int = 3) -> str:
    """The simulated store at `speed` x real time for `seconds` of wall time: live events keep
    coming while brokers restart and consumers die."""
    layout = ROOT / "config" / "layout.toml"
    return (
        f"sim:{layout}?shoppers={shoppers}&seed={seed}&speed={speed:g}&duration={seconds * speed:g}"
    )


def start_gateway(cfg: Path, src: str) -> subprocess.Popen[bytes]:
    """`shelfgate run` until its source ends and every event is acknowledged; `src` a source
    URI (replay:TRACE runs as fast as the CPU allows, sim:...&speed=N&duration=S paces)."""
    log = open(cfg.with_suffix(".log"), "ab")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen(
        shelfgate("run", "--config", str(cfg), "--source", src, "--exit-when-drained"),
        cwd=ROOT,
        env=env(),
        stderr=log,
        stdout=subprocess.DEVNULL,
    )


def drained(d: Path, gateway: str = "gw-test") -> bool:
    st = read_status(d / gateway / "outbox.db")
    return bool(st["backlog"] == 0 and st["acked"] == st["next_seq"] - 1)


def stop_when_drained(
    proc: subprocess.Popen[bytes], d: Path, source_s: float, gateway: str = "gw-test"
) -> int:
    """Wait for the source to end and the outbox to be fully acknowledged, then SIGTERM (a
    graceful stop, exit 0). Why not --exit-when-drained alone: after a reconnect with messages
    in flight the daemon did not exit although its outbox was drained (reported upstream)."""
    deadline = time.monotonic() + source_s + 120.0
    t0 = time.monotonic()
    while time.monotonic() < deadline and proc.poll() is None:
        if time.monotonic() - t0 > source_s + 1.0 and drained(d, gateway):
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the gateway did not stop") from None
    assert drained(d, gateway), read_status(d / gateway / "outbox.db")
    return rc


def produced(d: Path, gateway: str = "gw-test") -> int:
    return int(read_status(d / gateway / "outbox.db")["next_seq"]) - 1


def simulate_trace(d: Path, duration: int = 600, shoppers: int = 10, seed: int = 5) -> Path:
    out = d / "trace.jsonl"
    subprocess.run(
        shelfgate(
            "simulate",
            "--layout",
            str(ROOT / "config" / "layout.toml"),
            "--shoppers",
            str(shoppers),
            "--duration",
            str(duration),
            "--seed",
            str(seed),
            "--trace",
            str(out),
        ),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out
