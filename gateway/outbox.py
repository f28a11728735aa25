"""The outbox: a durable SQLite queue of events between the pipeline and MQTT.

Promises (../shared/RELIABILITY.md R1, R3-R5, R12):
- an event whose `append` returned is on disk (WAL, synchronous=FULL, one transaction per group
  commit) and survives a crash or power cut;
- every event gets a gapless, increasing `seq` at commit (a counter in the same transaction, so
  a seq is never reused even after rows are deleted) and keeps its `event_id`;
- a row leaves only through `ack` (a successful PUBACK) or the documented overflow policy;
- a quota bounds the database's size (pages in use): when an append would pass it, the
  overflow policy drops
  the least valuable rows first: `dwell_threshold` events (their moment has passed; the `dwell`
  event carries the stay) before `dwell` events, oldest first, never rows in flight. Every drop
  is counted in a persisted counter (`dropped_<type>`), reported upstream in the status;
- `quick_check` at open: a corrupt database is moved aside (`outbox.db.corrupt-<time>`), a fresh
  one is started and the `db_reset` alert is raised (persisted, reported in the status).

Not thread-safe by design: exactly one thread (the outbox writer) calls it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from .outbox_schema import MIGRATIONS
from .outbox_status import clear_alerts, figures, read_status

__all__ = ["DROP_ORDER", "Outbox", "Row", "clear_alerts", "disk_full", "read_status"]


from .clock import Clock
from .stays import SuspendedStay

log = logging.getLogger(__name__)

DROP_ORDER = ("dwell_threshold", "dwell", "offer_triggered")
WAL_CHECKPOINT_PAGES = 64  # 256 KB of WAL at most before a checkpoint (SQLite's default: 4 MB)
JOURNAL_LIMIT_BYTES = 1 << 20


def disk_full(e: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk (or a quota) is full; everything else is a real fault."""
    return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e)


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    event_id: str
    type: str
    body: bytes


class Outbox:
    def __init__(
        self, path: str | Path, quota_bytes: int = 512 * 1024 * 1024, clock: Clock | None = None
    ) -> None:
        self.path = Path(path)
        self._pending_alert: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        self._wall = (clock or Clock()).wall
        self.conn = self._open_checked()
        self._page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
        self._quota_stuck = False
        self.db = sqlite_utils.Database(self.conn)
        self._migrate()
        self._inflight: set[int] = set()
        self._cursor = 0  # every seq <= cursor is acked, in flight or queued for retry
        self._retry: list[int] = []

    # ------------------------------------------------------------------ open / migrate
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # NORMAL can lose the last commits on power loss
        conn.execute("PRAGMA busy_timeout=5000")
        # a small WAL, checkpointed often and truncated after: a gateway with a few MB of disk
        # left must not die of its own journal
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
        return conn

    def make_room(self) -> int:
        """The disk is full: give back what the database can (a truncating checkpoint; queued
        `dwell_threshold` events, counted as dropped). Returns the events dropped."""
        with contextlib.suppress(sqlite3.OperationalError):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        inflight = self._inflight
        rows = self.conn.execute(
            "SELECT seq, size FROM events WHERE type = 'dwell_threshold' ORDER BY seq"
        ).fetchall()
        drop = [(seq,) for seq, _ in rows if seq not in inflight]
        if not drop:
            return 0
        try:
            with self.db.atomic():
                self.conn.executemany("DELETE FROM events WHERE seq = ?", drop)
                self._bump("dropped_dwell_threshold", len(drop))
                self._bump("bytes", -sum(size for seq, size in rows if seq not in inflight))
        except sqlite3.OperationalError:
            return 0  # not even a delete fits: the caller keeps its events and retries
        with contextlib.suppress(sqlite3.OperationalError):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(drop)

    def count_drops(self, drops: dict[str, int]) -> None:
        """Events dropped before they reached the database (kept in memory while the disk was
        full, past the memory bound): counted like the quota's drops."""
        with self.db.atomic():
            for kind, n in drops.items():
                self._bump(f"dropped_{kind}", n)

    def _open_checked(self) -> sqlite3.Connection:
        reason = None
        if self.path.exists():
            try:
                conn = self._connect()
                row = conn.execute("PRAGMA quick_check").fetchone()
                if row and row[0] == "ok":
                    return conn
                reason = str(row[0] if row else "no answer")
                conn.close()
            except sqlite3.DatabaseError as e:
                reason = str(e)
        if reason is None:
            return self._connect()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._wall()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                p.rename(Path(str(aside) + suffix))
        log.error(
            "outbox %s is corrupt (%s): moved aside to %s, started a fresh one",
            self.path,
            reason,
            aside,
        )
        conn = self._connect()
        self._pending_alert = (
            f"db_reset: {self.path.name} was corrupt ({reason}); moved to {aside.name}"
        )
        return conn

    def _migrate(self) -> None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, step in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            with self.db.atomic():  # the migration and its record commit together, or neither
                step(self.db)
                self.conn.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))
        alert = self._pending_alert
        if alert:
            with self.db.atomic():
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('alert_db_reset', ?)", (alert,)
                )
            self._bump("db_resets", 1)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ counters and meta
    def _counter(self, name: str) -> int:
        row = self.conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, by: int) -> None:
        self.conn.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def set_meta(self, items: dict[str, Any]) -> None:
        with self.db.atomic():
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, orjson.dumps(v).decode()) for k, v in items.items()],
            )

    # ------------------------------------------------------------------ writing
    def append(
        self,
        bodies: Iterable[dict[str, Any]],
        triggers: Iterable[tuple[str, str, float]] = (),
        stays: Iterable[SuspendedStay] | None = None,
    ) -> list[int]:
        """Commit events in one transaction; returns the seqs given (duplicates by event_id are
        ignored). The seq is written into each stored body. `triggers` (tag key, offer id, wall
        time) are the offer triggers these events carry: committed with them, so a frequency
        cap holds across a crash exactly as far as its event does. `stays`, when given, replace
        the kept open stays in the same transaction (after a crash they agree with the events)."""
        now = self._wall()
        seqs: list[int] = []
        added = 0
        with self.db.atomic():
            seq = self._counter("next_seq")
            for body in bodies:
                body = dict(body, seq=seq)
                blob = orjson.dumps(body)
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO events(seq, event_id, type, created, size, attempts, body) "
                    "VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (seq, body["event_id"], body["type"], now, len(blob), blob),
                )
                if cur.rowcount:
                    seqs.append(seq)
                    added += len(blob)
                    seq += 1
            self.conn.execute("UPDATE counters SET value = ? WHERE name = 'next_seq'", (seq,))
            self.conn.executemany(
                "INSERT INTO offer_triggers(tag, offer_id, t) VALUES (?, ?, ?)", list(triggers)
            )
            self._bump("bytes", added)
            if stays is not None:
                self._write_stays(stays)
            self._enforce_quota()
        return seqs

    def db_bytes(self) -> int:
        """The database's size in use: its pages minus the free ones (freed pages are reused
        before the file grows, so the file stays at the high-water mark of this figure)."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def _enforce_quota(self) -> None:
        """`quota_bytes` bounds the database (`db_bytes`: events with their indexes and page
        slack, the offer catalogue, trigger history, stays). Past it, rows go in DROP_ORDER; a
        row's share of the pages is estimated from the last measurement and the figure measured
        again after each round, so a few rounds settle it."""
        for _ in range(8):
            used = self.db_bytes()
            over = used - self.quota_bytes
            if over <= 0:
                self._quota_stuck = False
                return
            payload = self._counter("bytes")
            if payload <= 0:
                break
            # bytes of JSON to drop for `over` bytes of pages: indexes and slack come on top of
            # the JSON (about 1.5x); more than 3x would mean the pages hold something else
            ratio = min(max(used / payload, 1.0), 3.0)
            if not self._drop_payload(max(1, int(over / ratio))):
                break
        if not self._quota_stuck:  # said once, not at every commit
            log.warning("outbox over its quota with nothing left that may be dropped")
            self._quota_stuck = True

    def _drop_payload(self, target: int) -> bool:
        """Drops rows worth `target` bytes of JSON in DROP_ORDER (never rows in flight)."""
        inflight = self._inflight
        freed_any = False
        for kind in DROP_ORDER:
            if target <= 0:
                break
            rows = self.conn.execute(
                "SELECT seq, size FROM events WHERE type = ? ORDER BY seq", (kind,)
            ).fetchall()
            drop: list[int] = []
            freed = 0
            for seq, size in rows:
                if freed >= target:
                    break
                if seq in inflight:
                    continue
                drop.append(seq)
                freed += size
            if drop:
                self.conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in drop])
                self._bump(f"dropped_{kind}", len(drop))
                self._bump("bytes", -freed)
                target -= freed
                freed_any = True
                log.warning("outbox over its quota: dropped %d %s events", len(drop), kind)
        return freed_any

    # ------------------------------------------------------------------ stays
    def save_stays(self, stays: Iterable[SuspendedStay]) -> None:
        """The open stays now (replacing the last saved), in one transaction."""
        with self.db.atomic():
            self._write_stays(stays)

    def _write_stays(self, stays: Iterable[SuspendedStay]) -> None:
        self.conn.execute("DELETE FROM stays")
        self.conn.executemany(
            "INSERT OR REPLACE INTO stays VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    s.key,
                    s.zone,
                    s.start,
                    s.last_in_zone,
                    int(s.threshold_sent),
                    s.dwell_id,
                    s.threshold_id,
                )
                for s in stays
            ],
        )

    def load_stays(self) -> list[SuspendedStay]:
        rows = self.conn.execute(
            "SELECT key, zone, start, last_in_zone, threshold_sent, dwell_id, threshold_id FROM stays"
        ).fetchall()
        return [
            SuspendedStay(k, z, s, last, bool(sent), d, th) for k, z, s, last, sent, d, th in rows
        ]

    # ------------------------------------------------------------------ offers
    def save_catalogue(self, version: int, body: bytes) -> None:
        with self.db.atomic():
            self.conn.execute(
                "INSERT OR REPLACE INTO catalogue(id, version, body, received) VALUES (1, ?, ?, ?)",
                (version, body.decode(), self._wall()),
            )

    def load_catalogue(self) -> tuple[int, bytes] | None:
        r = self.conn.execute("SELECT version, body FROM catalogue WHERE id = 1").fetchone()
        return (int(r[0]), r[1].encode()) if r else None

    def trigger_history(self, since: float) -> list[tuple[str, str, float]]:
        with self.db.atomic():
            self.conn.execute("DELETE FROM offer_triggers WHERE t < ?", (since,))
        rows = self.conn.execute("SELECT tag, offer_id, t FROM offer_triggers ORDER BY t")
        return [(str(a), str(b), float(c)) for a, b, c in rows]

    # ------------------------------------------------------------------ publishing side
    def claim(self, max_events: int, max_bytes: int, newest: bool = False) -> list[Row]:
        """Rows to publish next, not in flight: the retry queue first, then the oldest unsent
        (or, with newest=True, the newest unsent: live events are not starved by a backlog)."""
        out: list[Row] = []
        size = 0

        def take(seq: int, event_id: str, typ: str, body: bytes) -> bool:
            nonlocal size
            if out and (len(out) >= max_events or size + len(body) > max_bytes):
                return False
            out.append(Row(seq, event_id, typ, body))
            size += len(body) + 1
            self._inflight.add(seq)
            return True

        while self._retry and len(out) < max_events:
            seq = self._retry[0]
            r = self.conn.execute(
                "SELECT seq, event_id, type, body FROM events WHERE seq = ?", (seq,)
            ).fetchone()
            if r is not None and not take(*r):
                break
            self._retry.pop(0)
        if len(out) >= max_events:
            return out
        if newest:
            q = "SELECT seq, event_id, type, body FROM events WHERE seq > ? ORDER BY seq DESC LIMIT ?"
        else:
            q = "SELECT seq, event_id, type, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        rows = self.conn.execute(q, (self._cursor, max_events * 2 + len(self._inflight))).fetchall()
        first = len(out)
        for r in rows:
            if r[0] in self._inflight:
                continue
            if not take(*r):
                break
            if not newest:
                self._cursor = max(self._cursor, r[0])
        if newest:
            out[first:] = out[first:][::-1]
        return out

    def ack(self, seqs: list[int]) -> None:
        """The broker acknowledged the message carrying these events: they leave the outbox."""
        with self.db.atomic():
            freed = 0
            for seq in seqs:
                r = self.conn.execute(
                    "DELETE FROM events WHERE seq = ? RETURNING size", (seq,)
                ).fetchone()
                if r:
                    freed += r[0]
            self._bump("bytes", -freed)
            self._bump("acked", len(seqs))
            if seqs:
                self.conn.execute(
                    "UPDATE counters SET value = max(value, ?) WHERE name = 'last_acked_seq'",
                    (max(seqs),),
                )
        self._inflight.difference_update(seqs)

    def release(self, seqs: list[int]) -> None:
        """Not delivered (connection lost before a PUBACK, or refused): queue for a retry."""
        back = sorted(s for s in seqs if s in self._inflight)
        self._inflight.difference_update(back)
        self._retry = sorted(set(self._retry) | set(back))

    def refused(self, seqs: list[int], reason: str, max_attempts: int) -> int:
        """The broker refused the message (failure reason code): count an attempt; rows that
        reached `max_attempts` move to the dead-letter table. Returns how many moved."""
        moved = 0
        with self.db.atomic():
            for seq in seqs:
                self.conn.execute("UPDATE events SET attempts = attempts + 1 WHERE seq = ?", (seq,))
                r = self.conn.execute(
                    "SELECT attempts, event_id, body, size FROM events WHERE seq = ?", (seq,)
                ).fetchone()
                if r and r[0] >= max_attempts:
                    self.conn.execute(
                        "INSERT OR REPLACE INTO dead_letter(seq, event_id, reason, moved, body) VALUES (?, ?, ?, ?, ?)",
                        (seq, r[1], reason, self._wall(), r[2]),
                    )
                    self.conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
                    self._bump("bytes", -r[3])
                    self._bump("dead_lettered", 1)
                    moved += 1
            self._bump("refused", len(seqs))
        self._inflight.difference_update(seqs)
        self._retry = sorted(set(self._retry) | {s for s in seqs if self._exists(s)})
        return moved

    def resend(self, from_seq: int) -> dict[str, Any]:
        """The `resend` command: dead-lettered events from `from_seq` on go back into the outbox,
        and every held event from `from_seq` on is published again next (in seq order).
        Acknowledged events are deleted on acknowledgement: those cannot be resent."""
        with self.db.atomic():
            dead = self.conn.execute(
                "SELECT seq, event_id, body FROM dead_letter WHERE seq >= ? ORDER BY seq",
                (from_seq,),
            ).fetchall()
            for seq, event_id, body in dead:
                typ = str(orjson.loads(body).get("type", ""))
                self.conn.execute(
                    "INSERT OR IGNORE INTO events(seq, event_id, type, created, size, attempts, "
                    "body) VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (seq, event_id, typ, self._wall(), len(body), body),
                )
                self._bump("bytes", len(body))
            self.conn.execute("DELETE FROM dead_letter WHERE seq >= ?", (from_seq,))
        held = [
            int(r[0])
            for r in self.conn.execute(
                "SELECT seq FROM events WHERE seq >= ? ORDER BY seq", (from_seq,)
            )
        ]
        queued = [s for s in held if s not in self._inflight]
        self._retry = sorted(set(self._retry) | set(queued))
        last_acked = self._counter("last_acked_seq")
        return {
            "from_seq": from_seq,
            "queued": len(queued),
            "revived_dead_letters": len(dead),
            "first_held_seq": held[0] if held else None,
            "acknowledged_not_held": from_seq <= last_acked and (not held or held[0] > from_seq),
        }

    def _exists(self, seq: int) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM events WHERE seq = ?", (seq,)).fetchone() is not None
        )

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, Any]:
        out = figures(self.conn)
        oldest = out.pop("oldest_created")
        out["oldest_age_s"] = round(self._wall() - oldest, 1) if oldest is not None else None
        del out["state"]
        return out
