"""The consumer against a spawned mosquitto and PostgreSQL with crafted messages: poison input,
duplicates, statuses, and acknowledgement only after COMMIT."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from gateway.cloud.migrations import MIGRATIONS, apply_migrations
from tests.mqtt_helpers import Broker

from .conftest import ConsumerProc, query, scalar, wait_until
from .publish import batch, event, publish, status


def count(db: str) -> int:
    return int(scalar(db, "SELECT count(*) FROM shelfgate_events") or 0)


def test_poison_messages_go_to_dead_letters_and_the_consumer_goes_on(
    tmp_path: Path, pg_url: str
) -> None:
    broker = Broker(tmp_path).start()
    c = ConsumerProc(tmp_path, broker.url, pg_url, "c1").start()
    try:
        poison = [
            ("shelfgate/v1/st-x/gw-x/events", b"not json"),
            ("shelfgate/v1/st-x/gw-x/events", b"[1, 2]"),
            ("shelfgate/v1/st-x/gw-x/events", batch([event(1)], gateway="gw-other")[1]),
            (
                "shelfgate/v1/st-x/gw-x/events",
                batch([event(1)])[1].replace(b'"schema":1', b'"schema":2', 1),
            ),
            batch([{**event(2), "seq": 2**63}]),  # passes the schema, not a bigint
            batch([event(3, tag="p:\u0000")]),  # PostgreSQL text refuses NUL
            batch([event(4, start=1e300)]),  # out of timestamp range
            status(online="yes"),
        ]
        publish(broker.port, poison)
        good = batch([event(5), event(6, clock_synced="maybe"), event(7)])
        publish(broker.port, [good])
        wait_until(lambda: count(pg_url) == 2, 30, "the good events after the poison")
        dead = query(pg_url, "SELECT reason, seq FROM shelfgate_dead_letters ORDER BY id")
        reasons = [r for r, _ in dead]
        assert len(dead) == 9, dead
        assert reasons[0].startswith("not JSON")
        assert any("differ from the topic" in r for r in reasons)
        assert any("schema: schema" in r for r in reasons)
        assert any("seq out of range" in r for r in reasons)
        assert sum("database refused it" in r for r in reasons) == 2, reasons
        assert any("events/1/clock_synced" in r for r in reasons)
        assert [s for r, s in dead if "clock_synced" in r] == [6]
        stored = {r[0] for r in query(pg_url, "SELECT seq FROM shelfgate_events")}
        assert stored == {5, 7}
        report = query(
            pg_url, "SELECT gap_count, consumer_dead_letters, unexplained FROM shelfgate_gap_report"
        )
        # 1-4 and 6 missing; seq 6 is explained by this consumer's own dead letter
        assert report == [(5, 1, 4)], report
        assert c.proc is not None and c.proc.poll() is None
    finally:
        assert c.stop() == 0
        broker.stop()


def test_duplicates_are_absorbed_and_gaps_tracked(tmp_path: Path, pg_url: str) -> None:
    broker = Broker(tmp_path).start()
    c = ConsumerProc(tmp_path, broker.url, pg_url, "c1").start()
    try:
        publish(broker.port, [batch([event(1), event(2)]), batch([event(2), event(5)])])
        publish(broker.port, [batch([event(1), event(2)])])  # a resend
        publish(broker.port, [status(last_acked_seq=6, backlog=1, drops={"dwell_threshold": 0})])

        def row() -> tuple[object, ...]:
            rows = query(
                pg_url,
                "SELECT contiguous_seq, max_seq, gap_count, gaps, tail, missing, unexplained,"
                " events_stored, duplicates, online FROM shelfgate_gateways",
            )
            return rows[0] if rows else ()

        # 1, 2, 5 stored; 3-4 a gap; 6 acked by the broker but not here (tail); backlog 1
        want = (2, 5, 2, [[3, 4]], 1, 3, 2, 3, 3, True)
        wait_until(lambda: row() == want, 30, "the gap report", show=row)
        assert count(pg_url) == 3
        publish(broker.port, [batch([event(3), event(4), event(6)])])
        want = (6, 6, 0, [], 0, 0, 0, 6, 3, True)
        wait_until(lambda: row() == want, 30, "the gaps filled", show=row)
        # an older status arriving late (the last will, composed at connect) only says offline
        publish(broker.port, [status(online=False, time=1767261000.0, last_acked_seq=0)])
        wait_until(lambda: row()[-1] is False, 30, "offline", show=row)
        assert scalar(pg_url, "SELECT last_acked_seq FROM shelfgate_gateways") == 6
    finally:
        c.stop()
        broker.stop()


def test_acknowledged_only_after_commit(tmp_path: Path, pg_url: str) -> None:
    """The writer is held inside its INSERT by a table lock, the consumer is killed -9 with the
    messages received but not committed: they must come again after a restart. (With the ack
    sent on receipt, or before COMMIT, the broker forgets them and this test fails.)"""
    broker = Broker(tmp_path).start()
    c = ConsumerProc(tmp_path, broker.url, pg_url, "c1").start()
    try:
        publish(broker.port, [batch([event(1)])])
        wait_until(lambda: count(pg_url) == 1, 30, "the first event")
        with psycopg.connect(pg_url) as lock:
            lock.execute("LOCK TABLE shelfgate_events IN ACCESS EXCLUSIVE MODE")
            publish(broker.port, [batch([event(s)]) for s in range(2, 12)])
            wait_until(
                lambda: (
                    scalar(
                        pg_url,
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%%INSERT INTO shelfgate_events%%'",
                    )
                    == 1
                ),
                30,
                "the writer to block on the lock",
            )
            c.kill9()
            lock.rollback()
        assert count(pg_url) == 1
        c.start()
        wait_until(
            lambda: count(pg_url) == 11, 30, "the redelivered events", show=lambda: count(pg_url)
        )
        assert scalar(pg_url, "SELECT contiguous_seq FROM shelfgate_gateways") == 11
    finally:
        c.stop()
        broker.stop()


def test_migrations_once_under_concurrency(pg_url: str) -> None:
    results: list[list[int]] = []

    def migrate() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            results.append(apply_migrations(conn))

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = sorted(v for r in results for v in r)
    assert applied == [v for v, _, _ in MIGRATIONS]  # each exactly once, whoever won
    rows = query(pg_url, "SELECT version FROM shelfgate_migrations ORDER BY version")
    assert [r[0] for r in rows] == [v for v, _, _ in MIGRATIONS]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert apply_migrations(conn) == []


def test_failed_migration_leaves_nothing(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.cloud.migrations as m

    broken = (*m.MIGRATIONS, (len(m.MIGRATIONS) + 1, "broken", "CREATE TABLE x (; "))
    monkeypatch.setattr(m, "MIGRATIONS", broken)
    with (
        psycopg.connect(pg_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.SyntaxError),
    ):
        m.apply_migrations(conn)
    # the good migrations before it were in the same transaction: nothing is left
    assert scalar(pg_url, "SELECT count(*) FROM shelfgate_migrations") is None
    assert scalar(pg_url, "SELECT count(*) FROM shelfgate_events") is None


def test_database_connection_lost_mid_stream(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL drops the writer's connection (pg_terminate_backend) again and again while
    messages arrive: the writer reconnects, nothing is acknowledged that was not committed, and
    every event arrives exactly once."""
    broker = Broker(tmp_path).start()
    c = ConsumerProc(tmp_path, broker.url, pg_url, "c1").start()
    try:
        kills = 0
        for k in range(20):
            publish(broker.port, [batch([event(s) for s in range(k * 50 + 1, k * 50 + 51)])])
            kills += int(
                scalar(
                    pg_url,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                or 0
            )
        wait_until(lambda: count(pg_url) == 1000, 60, "all events", show=lambda: count(pg_url))
        assert kills > 0
        assert scalar(pg_url, "SELECT contiguous_seq FROM shelfgate_gateways") == 1000
        assert "PostgreSQL unavailable" in c.text()
        assert c.proc is not None and c.proc.poll() is None
    finally:
        c.stop()
        broker.stop()


def test_user_mistakes_are_one_line(tmp_path: Path) -> None:
    from tests.conftest import ROOT, shelfgate

    cases = [
        (["--broker", "http://x", "--db", "postgresql://x@127.0.0.1/x"], "--broker"),
        (["--broker", "mqtt://127.0.0.1:1", "--db", "mysql://x"], "--db"),
        (
            ["--broker", "mqtt://127.0.0.1:1", "--db", "postgresql://x@127.0.0.1:1/x"],
            "cannot connect",
        ),
        (
            [
                "--broker",
                "mqtt://127.0.0.1:1",
                "--db",
                "postgresql://x@127.0.0.1/x",
                "--password-file",
                str(tmp_path / "missing"),
            ],
            "--password-file",
        ),
    ]
    for args, words in cases:
        r = subprocess.run(shelfgate("consume", *args), cwd=ROOT, capture_output=True, timeout=60)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and words in err and "\n" not in err, (args, err)
