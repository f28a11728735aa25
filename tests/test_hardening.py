"""What hostile testing broke, each proved by a test that failed before the fix: a random key per
run, `check` saying "all good" where `run` crashed, files readable by everyone, a status that
did not say why the gateway is not connected."""

from __future__ import annotations

import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from drivers.serial.bgapi import bgapi_scan_response_frame
from gateway.outbox import read_status

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, free_port, wait_exit
from .test_daemon_delivery import small_trace, start_daemon, write_config  # noqa: F401
from .test_serial import Device

LAYOUT = ROOT / "config" / "layout.toml"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shelfgate(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout
    )


def keyless_config(d: Path, broker: str) -> Path:
    cfg = write_config(d, broker, min_dwell=20.0)
    cfg.write_text(cfg.read_text().replace('secret = "test-secret-0123456789"\n', ""))
    return cfg


def test_key_made_once_and_event_ids_stable_across_restarts(
    tmp_path: Path,
    small_trace: Path,  # noqa: F811
) -> None:
    """Without a configured secret the gateway makes a key once (0600, in its private data dir)
    and keeps it: the same input after a restart gives the same event ids and pseudonyms."""
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    cfg = keyless_config(tmp_path, broker.url)
    runs: list[set[tuple[str, str]]] = []
    try:
        for _ in range(2):
            seen = len(consumer.events)
            proc = start_daemon(cfg, "--source", f"replay:{small_trace}", "--exit-when-drained")
            assert wait_exit(proc, 60) == 0
            st = read_status(tmp_path / "data" / "outbox.db")
            produced = st["next_seq"] - 1 - sum(len(r) for r in runs)  # made by this run
            assert st["backlog"] == 0 and produced > 0

            def got(seen: int = seen) -> set[tuple[str, str]]:
                with consumer.lock:
                    return {(e["event_id"], e["tag"]) for e in consumer.events[seen:]}

            deadline = time.time() + 10
            while time.time() < deadline and len(got()) < produced:
                time.sleep(0.05)
            runs.append(got())
    finally:
        consumer.stop()
        broker.stop()
    assert runs[0] and runs[0] == runs[1]
    data = tmp_path / "data"
    key = data / "pseudonym.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "outbox.db").stat().st_mode) == 0o600
    res = run_cli("check", "--config", str(cfg), "--source", f"replay:{small_trace}")
    assert str(key) in res.stdout, res.stdout


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (  # a config file names its sources (never a simulated store by default)
            ("--data-dir", "{file}", "--source", "sim:config/layout.toml"),
            "gateway.data_dir: is a file; expected a directory",
        ),
        (("--source", "serial:/dev/nope-ttyACM9?protocol=bgapi&rx=rx01"), None),
        (("--source", "serial:/dev/null?protocol=bgapi&rx=rx99"), "expected rx=<a receiver id"),
        (("--source", "bluez:hci7?rx=rx01"), None),
    ],
)
def test_check_fails_where_run_would(
    tmp_path: Path, args: tuple[str, ...], expect: str | None
) -> None:
    """`check` validates as `run` does: a mistake `run` stops on is a FAIL line in `check`, and
    `run` says it in one line with exit 2 (never a traceback, never a crash loop)."""
    afile = tmp_path / "not-a-dir"
    afile.write_text("")
    args = tuple(a.replace("{file}", str(afile)) for a in args)
    cfg = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    chk = run_cli("check", "--config", str(cfg), "--layout", str(LAYOUT), *args)
    assert chk.returncode == 1, chk.stdout
    fails = [ln for ln in chk.stdout.splitlines() if ln.strip().startswith("FAIL")]
    problem = fails[0]
    assert "Traceback" not in chk.stdout + chk.stderr
    if expect is not None:
        assert expect in problem, chk.stdout
        run = run_cli("run", "--config", str(cfg), "--layout", str(LAYOUT), *args, timeout=30)
        assert run.returncode == 2 and expect in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0
    else:  # a device that is not there: named by check
        assert "does not exist" in problem or "no Bluetooth adapter" in problem, chk.stdout


def test_status_says_why_it_is_not_connected(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")  # nothing listens there
    proc = start_daemon(cfg, "--source", f"sim:{LAYOUT}?shoppers=2&seed=1")
    db = tmp_path / "data" / "outbox.db"
    try:
        deadline = time.time() + 30
        state: dict[str, object] = {}
        while time.time() < deadline and not state.get("mqtt_error"):
            time.sleep(0.2)
            if db.exists():
                try:
                    state = read_status(db)["state"]
                except Exception:
                    continue
        res = run_cli("status", "--config", str(cfg))
    finally:
        proc.send_signal(signal.SIGTERM)
        wait_exit(proc, 30)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("connection:"))
    assert "not connected to mqtt://127.0.0.1:" in line and "cannot reach 127.0.0.1:" in line, line
    assert "?" not in res.stdout and " - " not in res.stdout, res.stdout


class NonTagDevice(Device):
    """A BLED112 in an empty store: it hears phones and headphones, never a tag."""

    def frame(self) -> bytes:
        return bgapi_scan_response_frame(self.rssi, "11:22:33:44:55:66", NON_TAG_AD)


class SilentDevice(Device):
    """A receiver that takes its configuration and then never delivers anything."""

    def frame(self) -> bytes:
        return b""


NON_TAG_AD = bytes([2, 0x01, 0x06, 7, 0xFF, 0x06, 0x00, 0x01, 0x09, 0x20, 0x02])  # Microsoft


@pytest.mark.parametrize(("device", "fed"), [(NonTagDevice, True), (SilentDevice, False)])
def test_watchdog_follows_what_the_radio_delivers(
    tmp_path: Path, device: type[Device], fed: bool
) -> None:
    """Liveness is "the radio delivers advertisements" (any), per source: an empty store keeps
    the watchdog fed; a source that delivers nothing starves it after `source_silence_s`."""
    import contextlib
    import socket

    dev = device(tmp_path / "usb-a", "bgapi")
    dev.start()
    sock_path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    cfg = write_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    cfg.write_text(
        cfg.read_text().replace('id = "gw-test"', 'id = "gw-test"\nsource_silence_s = 3.0')
    )
    e = env()
    e.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")  # fed every 0.5 s if healthy
    proc = subprocess.Popen(
        shelfgate(
            "run", "--config", str(cfg), "--source", f"serial:{dev.link}?protocol=bgapi&rx=rx01"
        ),
        cwd=ROOT,
        env=e,
        stderr=subprocess.DEVNULL,
    )

    def feeds(seconds: float, until: str = "") -> int:
        n, end = 0, time.time() + seconds
        while time.time() < end:
            with contextlib.suppress(TimeoutError):
                msg = sock.recv(4096).decode()
                n += msg.startswith("WATCHDOG=1")
                if until and msg.startswith(until):
                    break
        return n

    try:
        feeds(60.0, until="READY=1")  # start-up (slow on a loaded machine)
        feeds(5.0)  # the first 3 s of silence, and some
        late = feeds(4.0)  # well past source_silence_s
        assert (late >= 4) if fed else (late == 0), late
    finally:
        proc.send_signal(signal.SIGTERM)
        wait_exit(proc, 20)
        sock.close()
        dev.running = False
