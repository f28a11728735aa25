"""The consumer's one database writer: takes MQTT messages in arrival order, commits a batch,
then hands the acks back. A lost database connection is retried with backoff (nothing is acked
meanwhile, so the broker holds the messages); a batch PostgreSQL refuses for its data is written
message by message, and the message it refuses goes to the dead-letter table."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from gateway.mqtt.settings import full_jitter

from .migrations import apply_migrations
from .schema import DeadLetter, Parsed, parse_message
from .store import BatchResult, write_batch, write_dead

log = logging.getLogger(__name__)

AckFn = Callable[[int, list[tuple[int, int]]], None]


@dataclass(slots=True)
class WriterStats:
    messages: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    db_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n_msgs: int, r: BatchResult) -> None:
        with self.lock:
            self.messages += n_msgs
            self.inserted += r.inserted
            self.duplicates += r.duplicates
            self.dead_letters += r.dead_letters
            self.batches += 1


class DbWriter:
    def __init__(
        self,
        db_url: str,
        take: Callable[[float], list[Any]],
        ack: AckFn,
        stop: threading.Event,
    ) -> None:
        self.db_url = db_url
        self._take = take
        self._ack = ack
        self._stop = stop
        self._conn: psycopg.Connection[Any] | None = None
        self._rng = random.Random()
        self.stats = WriterStats()
        self.failed = False

    def connect(self) -> None:
        """Connect and migrate (raises on a wrong URL, so `consume` fails fast at start)."""
        self._conn = psycopg.connect(self.db_url, autocommit=True, connect_timeout=10)
        apply_migrations(self._conn)

    def run(self) -> None:
        """Until stopped. An unexpected error stops the whole consumer (non-zero exit, so its
        supervisor restarts it) rather than leaving it subscribed with nobody writing."""
        try:
            while not self._stop.is_set():
                batch = self._take(0.2)
                if batch:
                    self._write_until_done(batch)
        except Exception:
            log.exception("the database writer failed: stopping")
            self.failed = True
            self._stop.set()

    def _write_until_done(self, batch: list[Any]) -> None:
        parsed = [parse_message(m.topic, m.payload) for m in batch]
        attempt = 0
        while not self._stop.is_set():
            try:
                result = self._write(parsed)
            except psycopg.OperationalError as e:
                # the database is away: keep the batch (unacked) and retry
                self.stats.db_errors += 1
                attempt += 1
                delay = full_jitter(min(attempt, 6), 0.5, 30.0, self._rng)
                log.warning("PostgreSQL unavailable (%s); retrying in %.1f s", e, delay)
                self._close()
                self._stop.wait(delay)
                continue
            self.stats.add(len(batch), result)
            self._ack_in_order(batch)
            return

    def _write(self, parsed: list[Parsed]) -> BatchResult:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.db_url, autocommit=True, connect_timeout=10)
        try:
            return write_batch(self._conn, parsed)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            return write_batch(self._conn, parsed)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as e:
            log.warning("a batch was refused (%s): writing its messages one by one", e)
            return self._write_one_by_one(parsed)

    def _write_one_by_one(self, parsed: list[Parsed]) -> BatchResult:
        assert self._conn is not None
        total = BatchResult(0, 0, 0)
        for p in parsed:
            try:
                r = write_batch(self._conn, [p])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as e:
                dead = _as_dead(p, f"database refused it: {e}".strip())
                write_dead(self._conn, dead)
                r = BatchResult(0, 0, len(dead))
            total = BatchResult(
                total.inserted + r.inserted,
                total.duplicates + r.duplicates,
                total.dead_letters + r.dead_letters,
            )
        return total

    def _ack_in_order(self, batch: list[Any]) -> None:
        """Per connection, in arrival order (a batch may span a reconnect)."""
        run: list[tuple[int, int]] = []
        connection = None
        for m in batch:
            if m.qos == 0:
                continue
            if connection is not None and m.connection != connection:
                self._ack(connection, run)
                run = []
            connection = m.connection
            run.append((m.mid, m.qos))
        if connection is not None and run:
            self._ack(connection, run)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._close()


def _as_dead(p: Parsed, reason: str) -> list[DeadLetter]:
    """A parsed message PostgreSQL refused, as dead letters (one per event, plus the status)."""
    out = list(p.dead)
    out += [DeadLetter(p.topic, reason, e.raw, e.store, e.gateway, e.seq) for e in p.events]
    if p.status is not None:
        out.append(DeadLetter(p.topic, reason, p.status.raw, p.status.store, p.status.gateway))
    return out
