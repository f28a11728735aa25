"""End to end: a real gateway -> a spawned mosquitto -> two `shelfgate consume` processes on one
shared subscription -> the machine's PostgreSQL, while the broker restarts and a consumer is
killed -9. Every produced event must be stored exactly once and the gap report must say 0."""

from __future__ import annotations

from pathlib import Path

from ..mqtt_helpers import Broker
from .conftest import ConsumerProc, query, scalar, wait_until
from .gateway_helpers import (
    STORE,
    prefill,
    produced,
    sim_source,
    start_gateway,
    stop_when_drained,
    write_config,
)

BACKLOG = 20_000
LIVE_S = 15.0
# mosquitto drops QoS 1 messages for a session past max_queued_messages (1000 by default) even
# after it PUBACKed them to the gateway: a consumer session must be allowed a deep queue
BROKER_EXTRA = "max_queued_messages 1000000"


def stored(db: str) -> int:
    return int(scalar(db, "SELECT count(*) FROM shelfgate_events") or 0)


def gateway_row(db: str) -> dict[str, object]:
    rows = query(
        db,
        "SELECT contiguous_seq, max_seq, gap_count, missing, unexplained, online, last_acked_seq,"
        " backlog, events_stored FROM shelfgate_gateways WHERE store = %s AND gateway = 'gw-test'",
        STORE,
    )
    keys = ("contiguous_seq", "max_seq", "gap_count", "missing", "unexplained", "online")
    keys += ("last_acked_seq", "backlog", "events_stored")
    return dict(zip(keys, rows[0], strict=True)) if rows else {}


def assert_exactly_once(db: str, n: int) -> None:
    total, distinct, lo, hi, distinct_seq = query(
        db,
        "SELECT count(*), count(DISTINCT event_id), min(seq), max(seq), count(DISTINCT seq)"
        " FROM shelfgate_events",
    )[0]
    assert (total, distinct, distinct_seq) == (n, n, n), (total, distinct, distinct_seq)
    assert (lo, hi) == (1, n)


def test_two_consumers_broker_restart_consumer_killed(tmp_path: Path, pg_url: str) -> None:
    broker = Broker(tmp_path, extra=BROKER_EXTRA, persistence=True).start()
    a = ConsumerProc(tmp_path, broker.url, pg_url, "consumer-a").start()
    b = ConsumerProc(tmp_path, broker.url, pg_url, "consumer-b").start()
    gw = None
    try:
        cfg = write_config(tmp_path, broker.url)
        prefill(tmp_path, BACKLOG)
        gw = start_gateway(cfg, sim_source(LIVE_S))  # live events while things break
        wait_until(lambda: stored(pg_url) >= BACKLOG // 5, 60, "a fifth of the backlog stored")
        a.kill9()  # mid-stream: it holds unacknowledged messages in its session
        wait_until(lambda: stored(pg_url) >= BACKLOG * 2 // 5, 60, "two fifths stored")
        broker.stop()  # SIGTERM: mosquitto writes its persistence file, sessions survive
        assert gw.poll() is None, "the gateway finished before the broker restart"
        broker.start()
        a.start()  # same client id: its session's unacknowledged messages come again
        assert stop_when_drained(gw, tmp_path, LIVE_S) == 0
        n = produced(tmp_path)
        assert n > BACKLOG, "the replay produced no live events"
        wait_until(
            lambda: (
                gateway_row(pg_url).get("contiguous_seq") == n
                and gateway_row(pg_url).get("online") is False
            ),
            60,
            f"all {n} events and the gateway's final status",
            show=lambda: (stored(pg_url), gateway_row(pg_url)),
        )
        assert_exactly_once(pg_url, n)
        row = gateway_row(pg_url)
        assert row["gap_count"] == 0 and row["missing"] == 0 and row["unexplained"] == 0, row
        assert row["events_stored"] == n, row
        assert scalar(pg_url, "SELECT count(*) FROM shelfgate_dead_letters") == 0
    finally:
        if gw is not None and gw.poll() is None:
            gw.kill()
        rc_a, rc_b = a.stop(), b.stop()
        broker.stop()
    assert rc_a == 0 and rc_b == 0
    # the shared subscription split the work: both consumers stored events
    assert b.stored() > 0, b.text()[-2000:]
    assert a.stored() > 0, a.text()[-2000:]
