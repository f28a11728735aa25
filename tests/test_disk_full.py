"""A full disk (R4): the daemon keeps sensing and delivering what it can, raises an alert in the
status message, holds new events in memory, and recovers by itself when space returns. Before
the fix it died with `sqlite3.OperationalError: database or disk is full` and crash-looped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import ROOT
from .mqtt_helpers import Broker, Consumer, wait_exit
from .test_daemon_delivery import start_daemon, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Write until the file system says no (on a full disk even creating the file may fail)."""
    with contextlib.suppress(OSError), open(path, "wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_full_disk_alerts_holds_events_and_recovers(tmp_path: Path, small_disk: Path) -> None:
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    cfg = write_config(tmp_path, broker.url, min_dwell=3.0)
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "data"), str(small_disk / "data")))
    proc = start_daemon(
        cfg, "--source", f"sim:{ROOT / 'config' / 'layout.toml'}?shoppers=30&speed=20&seed=2"
    )

    def alerts() -> list[list[str]]:
        with consumer.lock:
            return [m.get("alerts", []) for m in consumer.status]

    try:
        wait(lambda: len(consumer.event_ids()) >= 5, 60, "the first events")
        filler = small_disk / "filler"
        fill(filler)

        def full_alert() -> bool:
            # SQLite reuses its WAL's blocks: commits can go on into it for a while, and a
            # checkpoint can free blocks; keep the disk full until a commit needs more
            fill(small_disk / f"filler-{time.monotonic_ns()}")
            return any("disk_full" in a for al in alerts() for a in al)

        wait(full_alert, 90, "the disk-full alert")
        assert proc.poll() is None, "the daemon died on a full disk"
        seen = len(alerts())
        time.sleep(3)  # events go on being made while the disk is full (held in memory)
        assert proc.poll() is None
        before = max(e["seq"] for e in consumer.events)
        for f in small_disk.glob("filler*"):
            f.unlink()
        wait(
            lambda: any(not any("disk_full" in a for a in al) for al in alerts()[seen:]),
            60,
            "the alert to clear",
        )
        wait(lambda: max(e["seq"] for e in consumer.events) > before + 5, 60, "delivery to resume")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = wait_exit(proc, 30)
        err = proc.stderr.read().decode() if proc.stderr else ""
        consumer.stop()
        broker.stop()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "disk-full alert cleared" in err
