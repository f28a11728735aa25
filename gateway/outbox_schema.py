"""The outbox's tables, as versioned migrations: each runs in one transaction with its record."""

from __future__ import annotations

import sqlite_utils


def _m1(db: sqlite_utils.Database) -> None:
    db.table("events").create(
        {
            "seq": int,
            "event_id": str,
            "type": str,
            "created": float,
            "size": int,
            "attempts": int,
            "body": str,
        },
        pk="seq",
    )
    db.table("events").create_index(["event_id"], unique=True)
    db.table("events").create_index(["type", "seq"])
    db.table("dead_letter").create(
        {"seq": int, "event_id": str, "reason": str, "moved": float, "body": str}, pk="seq"
    )
    db.table("counters").create({"name": str, "value": int}, pk="name")
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.execute(
        "INSERT INTO counters(name, value) VALUES ('next_seq', 1), ('bytes', 0), ('last_acked_seq', 0)"
    )


def _m2(db: sqlite_utils.Database) -> None:
    # offers: the active catalogue (survives restarts, works with no broker) and the triggers
    # that frequency caps count (keyed by the tag's pseudonym: no raw id on disk)
    db.table("catalogue").create(
        {"id": int, "version": int, "body": str, "received": float}, pk="id"
    )
    db.table("offer_triggers").create({"tag": str, "offer_id": str, "t": float})
    db.table("offer_triggers").create_index(["tag", "offer_id"])
    db.table("offer_triggers").create_index(["t"])


def _m3(db: sqlite_utils.Database) -> None:
    # open stays kept across a restart (gateway.stays): keyed by the tag's pseudonym, no raw id
    db.table("stays").create(
        {
            "key": str,
            "zone": str,
            "start": float,
            "last_in_zone": float,
            "threshold_sent": int,
            "dwell_id": str,
            "threshold_id": str,
        },
        pk="key",
    )


MIGRATIONS = [_m1, _m2, _m3]
