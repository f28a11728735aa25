"""The gateway killed at random, TLS with client certificates, clock jumps, bad config."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from drivers.advertisement import Advertisement
from gateway.assembly import build_pipeline
from gateway.clock import FakeClock
from gateway.config import config_from_dict
from gateway.events import WireEvent
from gateway.layoutfile import load_layout
from gateway.mqtt.settings import full_jitter
from gateway.outbox import read_status
from positioning.frames import ibeacon_payload

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, wait_exit
from .test_daemon_delivery import start_daemon, write_config


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shelfgate(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout
    )


def test_gateway_kill9_loop_every_committed_event_delivered(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    cfg = write_config(tmp_path, broker.url, min_dwell=3.0)
    db = tmp_path / "data" / "outbox.db"
    rng = random.Random(3)
    try:
        for cycle in range(30):
            proc = start_daemon(
                cfg, "--source", f"sim:config/layout.toml?shoppers=40&speed=80&seed={cycle}"
            )
            time.sleep(rng.uniform(1.0, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with sqlite3.connect(db) as c:
                assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        produced = read_status(db)["next_seq"] - 1
        assert produced > 30
        empty = tmp_path / "empty.jsonl"
        empty.write_text("")
        proc = start_daemon(cfg, "--source", f"replay:{empty}", "--exit-when-drained")
        assert wait_exit(proc, 60) == 0
        deadline = time.time() + 10
        while time.time() < deadline and len({e["seq"] for e in consumer.events}) < produced:
            time.sleep(0.1)
        assert {e["seq"] for e in consumer.events} >= set(range(1, produced + 1))
    finally:
        consumer.stop()
        broker.stop()


def make_certs(d: Path) -> dict[str, Path]:
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in (("server", "localhost"), ("client", "gw-test")):
        ossl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        ossl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-extfile",
            "san.cnf",
        )
    return {k: d / k for k in ("ca.pem", "server.crt", "server.key", "client.crt", "client.key")}


def test_mutual_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    tls_port = Broker(tmp_path).port
    plain = Broker(tmp_path)
    extra = (
        f"listener {tls_port} 127.0.0.1\ncafile {certs['ca.pem']}\ncertfile {certs['server.crt']}\n"
        f"keyfile {certs['server.key']}\nrequire_certificate true\n"
    )
    broker = Broker(tmp_path, extra=extra, port=plain.port).start()
    consumer = Consumer(broker.port).start()  # plaintext loopback listener for the test's consumer
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    from .test_daemon_delivery import prefill

    ids = prefill(tmp_path, 200)
    try:
        good = write_config(tmp_path, f"mqtts://localhost:{tls_port}")
        text = good.read_text().replace(
            "[mqtt]\n",
            f'[mqtt]\nca_file = "{certs["ca.pem"]}"\ncert_file = "{certs["client.crt"]}"\nkey_file = "{certs["client.key"]}"\n',
        )
        good.write_text(text)
        proc = start_daemon(good, "--source", f"replay:{empty}", "--exit-when-drained")
        assert wait_exit(proc, 60) == 0
        assert consumer.wait_for(len(ids), 10)

        # without a client certificate the broker refuses: nothing is delivered, nothing lost
        ids2 = prefill(tmp_path, 10)
        nocert = tmp_path / "nocert.toml"
        nocert.write_text(
            good.read_text()
            .replace(f'cert_file = "{certs["client.crt"]}"\n', "")
            .replace(f'key_file = "{certs["client.key"]}"\n', "")
        )
        proc = start_daemon(nocert, "--source", f"replay:{empty}")
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
        st = read_status(tmp_path / "data" / "outbox.db")
        assert st["backlog"] == len(ids2)
        # and a server the CA does not vouch for is not trusted (verification is on)
        other = tmp_path / "other"
        other.mkdir()
        other_certs = make_certs(other)
        wrongca = tmp_path / "wrongca.toml"
        wrongca.write_text(
            good.read_text().replace(str(certs["ca.pem"]), str(other_certs["ca.pem"]))
        )
        proc = start_daemon(wrongca, "--source", f"replay:{empty}")
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
        assert read_status(tmp_path / "data" / "outbox.db")["backlog"] == len(ids2)

        # `shelfgate check` uses the same TLS settings: accepted, then both faults in words
        res = run_cli("check", "--config", str(good), "--source", f"replay:{empty}")
        assert "connected and accepted" in res.stdout, res.stdout
        res = run_cli("check", "--config", str(wrongca), "--source", f"replay:{empty}")
        assert res.returncode == 1 and "TLS failed" in res.stdout, res.stdout
        res = run_cli("check", "--config", str(nocert), "--source", f"replay:{empty}")
        assert res.returncode == 1 and "connected and accepted" not in res.stdout, res.stdout
        assert "Traceback" not in res.stdout + res.stderr
    finally:
        consumer.stop()
        broker.stop()


def test_clock_jump_changes_no_dwell_duration(tmp_path: Path) -> None:
    """The wall clock starts an hour behind and is corrected ("NTP sync") during a dwell: the
    real pipeline runs on the monotonic clock, so no duration changes; wall times are applied at
    the edge, with the clock as it is when each event leaves."""
    cfg = config_from_dict({"privacy": {"secret": "s" * 20}}, "<test>")
    layout = load_layout(ROOT / "config" / "layout.toml")
    clock = FakeClock(mono=5000.0, wall_offset=1767261600.0 - 3600.0, synced=False)
    pipeline = build_pipeline(cfg, layout, None, clock=clock)
    frame = {76: ibeacon_payload("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, 2)}
    events: list[WireEvent] = []

    def hear_until(t_end: float) -> None:
        while clock.mono() < t_end:
            events.extend(
                pipeline.feed([Advertisement("rx01", "AA:BB", -45, frame, {}, clock.mono())])
            )
            clock.advance(0.5)

    hear_until(5100.0)  # the stay starts and crosses min_dwell_s (60 s) before the correction
    clock.wall_offset += 3600.0  # NTP steps the clock
    clock.is_synced = True
    hear_until(5300.0)
    events.extend(pipeline.finish())
    first = next(e for e in events if e.type == "dwell_threshold")
    second = next(e for e in events if e.type == "dwell")
    assert first.body()["duration_s"] == 60.0
    assert first.clock_synced is False and second.clock_synced is True
    assert second.start - first.start == pytest.approx(3600.0)  # the corrected wall time
    assert second.end == pytest.approx(5299.5 + 1767261600.0)  # last heard, on the new offset
    assert second.body()["duration_s"] == pytest.approx(second.end - second.start)


def test_backoff_is_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    for attempt in (0, 3, 10, 40):
        xs = [full_jitter(attempt, 1.0, 300.0, rng) for _ in range(4000)]
        cap = min(300.0, 2.0**attempt)
        assert max(xs) <= cap and min(xs) >= 0.0
        mean = sum(xs) / len(xs)
        assert abs(mean - cap / 2) < cap * 0.05  # uniform over [0, cap]: no lock-step
        assert sum(x < cap / 4 for x in xs) / len(xs) == pytest.approx(0.25, abs=0.04)


@pytest.mark.parametrize(
    ("body", "expect", "problems"),
    [
        ("[mqtt]\nbrokr = 'x'\n", "mqtt.brokr: unknown key", 1),
        ("[pipeline]\nmin_dwell_s = 'long'\n", "pipeline.min_dwell_s: expected", 1),
        (
            "[mqtt]\ncert_file = '/nope/gw.crt'\nkey_file = '/nope/gw.key'\n",
            "mqtt.cert_file: file /nope/gw.crt does not exist",
            2,  # both files are missing: a line each
        ),
        ("[mqtt]\nbroker = 'mqtt://10.1.2.3:1883'\n", "plaintext MQTT to a non-loopback host", 1),
        ("[privacy]\nsecret = 'short'\n", "privacy.secret: expected at least 16", 1),
        ("[gateway\n", "not valid TOML", 1),
    ],
)
def test_bad_config_gives_one_clear_line(
    tmp_path: Path, body: str, expect: str, problems: int
) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(body)
    res = run_cli("run", "--config", str(cfg), timeout=30)
    assert res.returncode == 2
    assert expect in res.stderr and str(cfg) in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") == problems - 1


def test_every_config_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        "[gateway]\nid = 'gw-01'\n\n[pipeline]\nmax_tags = 'many'\nmin_dwell_s = -1\n"
        "\n[mqtt]\nbroker = 'mqtt://user:pw@broker.example.com'\nkeepalive = 5\n"
    )
    for cmd in ("run", "check"):
        res = run_cli(cmd, "--config", str(cfg), timeout=30)
        out = res.stderr if cmd == "run" else res.stdout
        assert res.returncode == (2 if cmd == "run" else 1), out
        assert f"{cfg}:5: pipeline.max_tags: expected most tags tracked at once, got 'many'" in out
        assert f"{cfg}:6: pipeline.min_dwell_s: expected a positive number" in out
        assert f"{cfg}:9: mqtt.broker:" in out and "credentials do not belong" in out
        assert f"{cfg}:10: mqtt.keepalive: unknown key" in out
        assert "pw" not in out.replace("password", "")  # the password is never echoed
        assert "Traceback" not in res.stdout + res.stderr


def test_check_explains_in_plain_words(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    try:
        cfg = write_config(tmp_path, broker.url)
        # a config file names its sources (it never falls back to a simulated store)
        res = run_cli(
            "check", "--config", str(cfg), "--source", "sim:config/layout.toml", timeout=60
        )
        assert res.returncode == 0, res.stdout
        assert "connected and accepted" in res.stdout and "all good" in res.stdout
    finally:
        broker.stop()
    # broker gone, replay file missing: named, exit 1
    res = run_cli("check", "--config", str(cfg), "--source", "replay:/nope.jsonl", timeout=60)
    assert res.returncode == 1
    assert "FAIL  source replay:/nope.jsonl: the trace file does not exist" in res.stdout
    assert f"cannot reach 127.0.0.1:{broker.port}" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_systemd_notify_ready_and_watchdog_only_while_running(tmp_path: Path) -> None:
    """A fake NOTIFY_SOCKET: READY=1 at start, WATCHDOG=1 while healthy; a SIGSTOPped daemon
    stops feeding (systemd would restart it)."""
    import os
    import socket

    sock_path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    cfg = write_config(tmp_path, "mqtt://127.0.0.1:9")
    e = env()
    e.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")  # feed every 0.5 s
    proc = subprocess.Popen(
        shelfgate("run", "--config", str(cfg), "--source", "sim:config/layout.toml?shoppers=5"),
        cwd=ROOT,
        env=e,
        stderr=subprocess.DEVNULL,
    )

    def collect(seconds: float) -> list[str]:
        out, end = [], time.time() + seconds
        while time.time() < end:
            with contextlib.suppress(TimeoutError):
                out.append(sock.recv(4096).decode())
        return out

    try:
        msgs = collect(6.0)
        assert msgs and msgs[0] == "READY=1"
        assert sum(m.startswith("WATCHDOG=1") for m in msgs) >= 3
        os.kill(proc.pid, signal.SIGSTOP)
        collect(0.5)  # drain what was in flight
        assert not [m for m in collect(2.0) if m.startswith("WATCHDOG=1")]
        os.kill(proc.pid, signal.SIGCONT)
        assert [m for m in collect(3.0) if m.startswith("WATCHDOG=1")]  # healthy again: fed again
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 15) == 0
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()


def test_sigterm_right_after_sigcont_stops_the_daemon(tmp_path: Path) -> None:
    """Stopped (SIGSTOP: a debugger, a frozen container), continued and at once told to stop:
    the simulated store delivers its backlog at that instant, and the stop must not be lost
    (Python 3.11's asyncio.wait_for swallowed it; regression test)."""
    import os

    cfg = write_config(tmp_path, "mqtt://127.0.0.1:9")
    for _ in range(2):
        proc = start_daemon(cfg, "--source", "sim:config/layout.toml?shoppers=20&speed=20&seed=4")
        try:
            time.sleep(3.0)
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(1.5)
            os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            assert wait_exit(proc, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
