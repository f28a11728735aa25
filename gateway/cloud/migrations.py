"""Versioned migrations of the consumer's PostgreSQL schema. Every pending migration is applied
in one transaction together with its row in `shelfgate_migrations`, under an advisory lock, so
N consumers starting at once apply each exactly once and a failure leaves nothing half done.
Append new migrations at the end; never edit one that has shipped."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from .analytics_sql import ANALYTICS_SQL

log = logging.getLogger(__name__)

LOCK_KEY = 0x5E1F6A7E  # pg_advisory_xact_lock key: "shelfgate migrations"

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "events, gateways, dead letters",
        """
CREATE TABLE shelfgate_events (
    event_id          uuid PRIMARY KEY,
    seq               bigint NOT NULL,
    type              text NOT NULL,
    store             text NOT NULL,
    gateway           text NOT NULL,
    tag               text NOT NULL,
    zone              text NOT NULL,
    start_at          timestamptz NOT NULL,
    end_at            timestamptz NOT NULL,
    duration_s        double precision NOT NULL,
    clock_synced      boolean NOT NULL,
    offer_id          text,
    catalogue_version integer,
    payload_ref       text,
    raw               jsonb NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shelfgate_events_gateway_seq ON shelfgate_events (store, gateway, seq);
CREATE INDEX shelfgate_events_store_start ON shelfgate_events (store, start_at);

CREATE TABLE shelfgate_gateways (
    store           text NOT NULL,
    gateway         text NOT NULL,
    received        jsonb NOT NULL DEFAULT '[]',
    contiguous_seq  bigint NOT NULL DEFAULT 0,
    max_seq         bigint NOT NULL DEFAULT 0,
    gap_count       bigint NOT NULL DEFAULT 0,
    gaps            jsonb NOT NULL DEFAULT '[]',
    tail            bigint NOT NULL DEFAULT 0,
    missing         bigint NOT NULL DEFAULT 0,
    unexplained     bigint NOT NULL DEFAULT 0,
    events_stored   bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    online          boolean,
    status          jsonb,
    status_time     double precision,
    last_acked_seq  bigint NOT NULL DEFAULT 0,
    backlog         bigint NOT NULL DEFAULT 0,
    drops           bigint NOT NULL DEFAULT 0,
    dead_letter     bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store, gateway)
);

CREATE TABLE shelfgate_dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    reason      text NOT NULL,
    store       text,
    gateway     text,
    seq         bigint,
    payload     bytea NOT NULL
);
""",
    ),
    (2, "k-anonymous shopper-path functions", ANALYTICS_SQL),
    (
        3,
        "gap report view; events this consumer dead-lettered, per gateway",
        """
ALTER TABLE shelfgate_gateways ADD COLUMN rejected bigint NOT NULL DEFAULT 0;
CREATE VIEW shelfgate_gap_report AS
SELECT store, gateway, online, contiguous_seq, max_seq, last_acked_seq, gap_count, tail,
       missing, backlog AS gateway_backlog, drops AS gateway_drops,
       dead_letter AS gateway_dead_letters, rejected AS consumer_dead_letters, unexplained,
       gaps, status_time, updated_at
FROM shelfgate_gateways;
""",
    ),
)


def apply_migrations(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply what is pending; returns the versions applied now."""
    applied_now: list[int] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS shelfgate_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM shelfgate_migrations")
        done = {int(r[0]) for r in cur.fetchall()}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            cur.execute(sql.encode())
            cur.execute(
                "INSERT INTO shelfgate_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied_now.append(version)
    if applied_now:
        log.info("database migrated to version %d (applied %s)", applied_now[-1], applied_now)
    return applied_now
