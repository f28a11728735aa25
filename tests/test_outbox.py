"""Outbox: seq, quota policy and its counters across restarts, corruption, crash safety."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.outbox import Outbox, clear_alerts, read_status


def ev(i: int, kind: str = "dwell", pad: int = 0) -> dict[str, object]:
    return {"event_id": f"e-{i}", "type": kind, "x": "y" * pad}


def test_seq_gapless_and_never_reused(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    assert ob.append([ev(i) for i in range(5)]) == [1, 2, 3, 4, 5]
    rows = ob.claim(10, 1 << 20)
    ob.ack([r.seq for r in rows])
    assert ob.stats()["backlog"] == 0
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert ob.append([ev(i) for i in range(5, 8)]) == [6, 7, 8]  # the counter survives deletes
    assert ob.append([ev(6)]) == []  # the same event_id is not queued twice
    assert ob.stats()["last_acked_seq"] == 5


def test_quota_policy_order_and_persisted_counters(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", quota_bytes=300_000)
    ob.append([ev(i, "dwell", 2000) for i in range(40)])
    ob.append([ev(100 + i, "dwell_threshold", 2000) for i in range(100)])
    st = ob.stats()
    assert ob.db_bytes() <= 300_000
    # thresholds go first: every dwell survives while thresholds remain to drop
    kinds = [r[0] for r in ob.conn.execute("SELECT type FROM events")]
    assert kinds.count("dwell") == 40
    assert st["drops"] == {"dwell_threshold": 140 - len(kinds)}
    ob.append([ev(200 + i, "dwell", 2000) for i in range(150)])  # now dwells must go, oldest first
    seqs = [r[0] for r in ob.conn.execute("SELECT seq FROM events WHERE type='dwell' ORDER BY seq")]
    assert seqs[-1] == 290 and "dwell" in ob.stats()["drops"]
    assert all(k == "dwell" for k in [r[0] for r in ob.conn.execute("SELECT type FROM events")])
    drops = ob.stats()["drops"]
    ob.close()
    # counters are persisted and reported after a restart
    assert read_status(tmp_path / "o.db")["drops"] == drops
    assert Outbox(tmp_path / "o.db", quota_bytes=300_000).stats()["drops"] == drops


def test_quota_bounds_the_database_file(tmp_path: Path) -> None:
    """`quota_mb` is the database's size, as documented: pages in use (indexes, slack and the
    other tables included), not the events' JSON bytes, and the file itself stays near it."""
    quota = 400_000
    db = tmp_path / "o.db"
    ob = Outbox(db, quota_bytes=quota)
    for b in range(30):  # 20 events of ~1 KB per commit, 600 KB of JSON in all
        ob.append([ev(b * 20 + i, "dwell", 1000) for i in range(20)])
        assert ob.db_bytes() <= quota
    st = ob.stats()
    assert st["drops"]["dwell"] > 0
    assert st["backlog_bytes"] > quota / 3  # the quota is used, not emptied
    ob.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db.stat().st_size <= quota + 3 * 20 * 1100  # at most a commit or so past the quota


def test_inflight_rows_are_not_dropped(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", quota_bytes=100_000)
    ob.append([ev(i, "dwell", 2000) for i in range(10)])
    claimed = {r.seq for r in ob.claim(5, 1 << 20)}
    ob.append([ev(100 + i, "dwell", 2000) for i in range(60)])
    left = {r[0] for r in ob.conn.execute("SELECT seq FROM events")}
    assert ob.stats()["drops"]["dwell"] > 0 and claimed <= left


def test_refused_rows_dead_letter_after_max_attempts(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.append([ev(i) for i in range(3)])
    for _ in range(2):
        rows = ob.claim(10, 1 << 20)
        assert len(rows) == 3
        ob.refused([r.seq for r in rows], "Not authorized", max_attempts=2)
    st = ob.stats()
    assert st["dead_letter"] == 3 and st["backlog"] == 0 and st["acked"] == 0


def test_release_requeues_in_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.append([ev(i) for i in range(6)])
    a = ob.claim(3, 1 << 20)
    b = ob.claim(3, 1 << 20)
    ob.release([r.seq for r in a])
    assert [r.seq for r in ob.claim(10, 1 << 20)] == [1, 2, 3]
    assert [r.seq for r in b] == [4, 5, 6]


def test_newest_claim_serves_live_events(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.append([ev(i) for i in range(100)])
    assert [r.seq for r in ob.claim(5, 1 << 20, newest=True)] == [96, 97, 98, 99, 100]
    assert [r.seq for r in ob.claim(3, 1 << 20)] == [1, 2, 3]


def test_corrupt_database_is_moved_aside_with_an_alert(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    ob = Outbox(db)
    ob.append([ev(i, pad=3000) for i in range(200)])
    ob.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ob.close()
    raw = bytearray(db.read_bytes())
    for off in range(4096 * 2, len(raw) - 4096, 4096):  # trash page bodies, keep the header
        raw[off + 100 : off + 400] = os.urandom(300)
    db.write_bytes(bytes(raw))
    ob = Outbox(db)
    st = ob.stats()
    assert st["backlog"] == 0 and st["db_resets"] == 1
    assert any("corrupt" in a for a in st["alerts"])
    assert list(tmp_path.glob("o.db.corrupt-*"))
    assert ob.append([ev(1)]) == [1]
    ob.close()
    assert read_status(db)["alerts"]  # shown by `shelfgate status` until cleared
    assert clear_alerts(db) == 1 and read_status(db)["alerts"] == []


CHILD = r"""
import sys
from gateway.outbox import Outbox
ob = Outbox(sys.argv[1])
i = int(sys.argv[2])
while True:
    seqs = ob.append([{"event_id": f"k-{i}-{j}", "type": "dwell", "pad": "x" * 300} for j in range(7)])
    print(seqs[-1], flush=True)  # reported only after COMMIT returned
    i += 1
"""


def test_kill9_loop_loses_no_committed_event(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    reported: set[int] = set()
    rng = random.Random(7)
    for cycle in range(30):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), str(cycle * 100000)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.decode().split():
            reported.add(int(line))
        with sqlite3.connect(db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(reported) > 30
    with sqlite3.connect(db) as c:
        have = {r[0] for r in c.execute("SELECT seq FROM events")}
        top = c.execute("SELECT max(seq) FROM events").fetchone()[0]
    assert reported <= have
    assert have == set(range(1, top + 1))  # gapless


def test_status_of_an_outbox_still_being_created(tmp_path: Path) -> None:
    """`shelfgate status` (or a test) reading while a daemon creates the database: it waits for
    the tables, and names a file that never gets them."""
    import pytest

    from positioning.errors import ShelfgateError

    db = tmp_path / "outbox.db"
    sqlite3.connect(db).close()  # the file exists, no tables yet
    with pytest.raises(ShelfgateError, match="not a shelfgate outbox"):
        read_status(db, wait_s=0.2)
