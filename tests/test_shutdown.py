"""SIGTERM commits what the pipeline holds: with a commit interval far longer than the test, the
only way the events already made reach the outbox is the shutdown's own flush (it could be
removed without any test noticing before)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from gateway.outbox import read_status

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, Consumer, env, free_port, wait_exit
from .web_helpers import Daemon, wait_for


def test_sigterm_commits_what_the_pipeline_holds(tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    consumer = Consumer(broker.port).start()
    port = free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-test"
data_dir = "{tmp_path / "data"}"
[privacy]
secret = "test-secret-0123456789"
[pipeline]
min_dwell_s = 5.0
[mqtt]
broker = "{broker.url}"
connect_delay_max_s = 0.0
[outbox]
commit_interval_s = 3600.0   # never by the timer during this test
commit_max_events = 100000   # nor by size
[web]
listen = "127.0.0.1:{port}"
""")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            shelfgate(
                "run",
                "--config",
                str(cfg),
                "--source",
                f"sim:{ROOT / 'config' / 'layout.toml'}?shoppers=30&speed=40&seed=3",
            ),
            cwd=ROOT,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    web = Daemon(proc, f"http://127.0.0.1:{port}", log)
    db = tmp_path / "data" / "outbox.db"
    try:

        def made() -> float | None:
            try:
                m = web.metrics()
            except (OSError, AssertionError):
                return None
            n = sum(v for (name, _), v in m.items() if name == "shelfgate_events_total")
            return n if n >= 5 else None

        produced = wait_for("the pipeline to make 5 events", made, 60)
        assert read_status(db)["next_seq"] == 1  # nothing committed yet: all held in memory
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 20) == 0, log.read_text()[-2000:]
        st = read_status(db)
        assert st["next_seq"] - 1 >= produced  # the shutdown flush committed them
        # queued for the next start, or already acknowledged (then the consumer has them)
        assert st["acked"] + st["backlog"] == st["next_seq"] - 1
        assert consumer.wait_for(st["acked"], 10)
    finally:
        consumer.stop()
        broker.stop()
        if proc.poll() is None:
            proc.kill()
