"""Writing parsed messages to PostgreSQL: one transaction per batch of MQTT messages.

Order inside a transaction (deadlock-free between N consumers): events are inserted sorted by
event_id, then the affected gateway rows are locked in (store, gateway) order. Duplicates
(at-least-once delivery) are absorbed by `ON CONFLICT (event_id) DO NOTHING`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from . import seqs
from .schema import DeadLetter, EventRow, Parsed, StatusRow

# one JSON array parameter, taken apart by PostgreSQL: adapting 15 Python lists to arrays cost
# psycopg ~75% of a batch's time (3,600 events/s); the validated events are JSON already
INSERT_EVENTS = """
INSERT INTO shelfgate_events (event_id, seq, type, store, gateway, tag, zone, start_at, end_at,
    duration_s, clock_synced, offer_id, catalogue_version, payload_ref, raw)
SELECT (r->>'event_id')::uuid, (r->>'seq')::bigint, r->>'type', r->>'store', r->>'gateway',
    r->>'tag', r->>'zone', to_timestamp((r->>'start')::float8), to_timestamp((r->>'end')::float8),
    (r->>'duration_s')::float8, (r->>'clock_synced')::boolean, r->>'offer_id',
    (r->>'catalogue_version')::integer, r->>'payload_ref', r
FROM jsonb_array_elements(%s::jsonb) AS e(r)
ORDER BY 1
ON CONFLICT (event_id) DO NOTHING
RETURNING store, gateway
"""

LOCK_GATEWAY = """
INSERT INTO shelfgate_gateways AS g (store, gateway) VALUES (%s, %s)
ON CONFLICT (store, gateway) DO UPDATE SET updated_at = now()
RETURNING g.received, g.last_acked_seq, g.backlog, g.drops, g.dead_letter, g.status_time,
    g.rejected
"""

UPDATE_GATEWAY = """
UPDATE shelfgate_gateways SET received = %s, contiguous_seq = %s, max_seq = %s, gap_count = %s,
    gaps = %s, tail = %s, missing = %s, unexplained = %s,
    events_stored = events_stored + %s, duplicates = duplicates + %s,
    online = COALESCE(%s, online), status = COALESCE(%s, status),
    status_time = COALESCE(%s, status_time), last_acked_seq = %s, backlog = %s, drops = %s,
    dead_letter = %s, rejected = %s, updated_at = now()
WHERE store = %s AND gateway = %s
"""

INSERT_DEAD = """
INSERT INTO shelfgate_dead_letters (topic, reason, store, gateway, seq, payload)
VALUES (%s, %s, %s, %s, %s, %s)
"""


@dataclass(slots=True)
class GatewayDelta:
    seqs: list[int] = field(default_factory=list)
    status: StatusRow | None = None
    offered: int = 0  # events in the batch (stored + duplicates)
    rejected: int = 0  # events of this gateway dead-lettered here (their seq is a gap)


@dataclass(frozen=True, slots=True)
class BatchResult:
    inserted: int
    duplicates: int
    dead_letters: int


def write_batch(conn: psycopg.Connection[Any], batch: Sequence[Parsed]) -> BatchResult:
    """Everything in `batch` in one transaction (the caller commits nothing else)."""
    events = sorted((e for p in batch for e in p.events), key=lambda e: e.event_id)
    dead = [d for p in batch for d in p.dead]
    with conn.transaction(), conn.cursor() as cur:
        stored = _insert_events(cur, events) if events else Counter()
        deltas = _deltas(batch, events, dead)
        for key in sorted(deltas):
            _update_gateway(cur, key, deltas[key], deltas[key].offered - stored[key])
        if dead:
            cur.executemany(INSERT_DEAD, [_dead_params(d) for d in dead])
    inserted = sum(stored.values())
    return BatchResult(inserted, len(events) - inserted, len(dead))


def write_dead(conn: psycopg.Connection[Any], dead: Iterable[DeadLetter]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(INSERT_DEAD, [_dead_params(d) for d in dead])


def _dead_params(d: DeadLetter) -> tuple[Any, ...]:
    return (d.topic, d.reason[:2000], d.store, d.gateway, d.seq, d.payload)


def _insert_events(cur: psycopg.Cursor[Any], events: list[EventRow]) -> Counter[tuple[str, str]]:
    """Inserted rows per (store, gateway); the rest were duplicates."""
    cur.execute(INSERT_EVENTS, ((b"[" + b",".join(e.raw for e in events) + b"]").decode(),))
    return Counter((str(st), str(gw)) for st, gw in cur.fetchall())


def _deltas(
    batch: Sequence[Parsed], events: list[EventRow], dead: list[DeadLetter]
) -> dict[tuple[str, str], GatewayDelta]:
    deltas: dict[tuple[str, str], GatewayDelta] = {}
    for dl in dead:
        if dl.store is not None and dl.gateway is not None and dl.seq is not None:
            deltas.setdefault((dl.store, dl.gateway), GatewayDelta()).rejected += 1
    for e in events:
        d = deltas.setdefault((e.store, e.gateway), GatewayDelta())
        d.seqs.append(e.seq)
        d.offered += 1
    for p in batch:
        if p.status is not None:
            d = deltas.setdefault((p.status.store, p.status.gateway), GatewayDelta())
            if d.status is None or p.status.time >= d.status.time:
                d.status = p.status
    return deltas


def _update_gateway(
    cur: psycopg.Cursor[Any], key: tuple[str, str], delta: GatewayDelta, duplicates: int
) -> None:
    cur.execute(LOCK_GATEWAY, key)
    row = cur.fetchone()
    assert row is not None
    received_json, last_acked, backlog, drops, dead_letter, status_time, rejected = row
    rejected += delta.rejected
    st = delta.status
    online: bool | None = None
    if st is not None and status_time is not None and st.time < status_time:
        # an older status arriving late: only a last will (online false, composed when the
        # gateway connected) still says something new; its counters are stale
        online = False if not st.online else None
        st = None
    if st is not None:
        online = st.online
        last_acked, backlog, drops, dead_letter = (
            st.last_acked_seq,
            st.backlog,
            st.drops,
            st.dead_letter,
        )
    received = seqs.merge(received_json, delta.seqs)
    rep = seqs.report(received, last_acked, backlog, drops, dead_letter, rejected)
    cur.execute(
        UPDATE_GATEWAY,
        (
            Jsonb(received),
            rep.contiguous_seq,
            rep.max_seq,
            rep.gap_count,
            Jsonb(rep.gaps),
            rep.tail,
            rep.missing,
            rep.unexplained,
            delta.offered - duplicates,
            duplicates,
            online,
            None if st is None else Jsonb(orjson.loads(st.raw)),
            None if st is None else st.time,
            last_acked,
            backlog,
            drops,
            dead_letter,
            rejected,
            *key,
        ),
    )
