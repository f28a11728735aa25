"""Reading the outbox from outside the daemon (`shelfgate status`, tests), read-only, while it
runs or after it stopped."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from positioning.errors import ShelfgateError


def figures(conn: sqlite3.Connection) -> dict[str, Any]:
    """Backlog, counters, drops, alerts and the daemon's last written state: what the status
    message, `shelfgate status` and the tests report."""
    backlog, oldest = conn.execute("SELECT count(*), min(created) FROM events").fetchone()
    counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    dead = conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
    state: dict[str, Any] = {}
    for k, v in meta.items():
        if not k.startswith("alert_"):
            try:
                state[k] = orjson.loads(v)
            except orjson.JSONDecodeError:
                state[k] = v
    return {
        "backlog": backlog,
        "backlog_bytes": counters.get("bytes", 0),
        "oldest_created": oldest,
        "last_acked_seq": counters.get("last_acked_seq", 0),
        "next_seq": counters.get("next_seq", 1),
        "acked": counters.get("acked", 0),
        "dead_letter": dead,
        "drops": {
            k[len("dropped_") :]: v for k, v in counters.items() if k.startswith("dropped_") and v
        },
        "db_resets": counters.get("db_resets", 0),
        "alerts": [v for k, v in meta.items() if k.startswith("alert_")],
        "state": state,
    }


def read_status(path: str | Path, wait_s: float = 5.0) -> dict[str, Any]:
    """The outbox figures, read-only (for `shelfgate status`, while the daemon runs).

    A daemon starting up may have created the file but not yet its tables: that is waited for
    (up to `wait_s`), then reported as not an outbox."""
    deadline = time.monotonic() + wait_s
    while True:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            return figures(conn)
        except sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            if time.monotonic() >= deadline:
                raise ShelfgateError(
                    f"{path}: not a shelfgate outbox (no {str(e).split(':')[-1].strip()} table)"
                ) from None
        finally:
            conn.close()
        time.sleep(0.05)


def clear_alerts(path: str | Path) -> int:
    """An installer acknowledged the alerts (`shelfgate status --clear-alerts`)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        return conn.execute("DELETE FROM meta WHERE key LIKE 'alert_%'").rowcount
