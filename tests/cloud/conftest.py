"""Real parts for the cloud tests: the machine's PostgreSQL (a fresh database per test, dropped
afterwards), mosquitto spawned per test (tests/mqtt_helpers.py), `shelfgate consume` and
`shelfgate run` as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, shelfgate
from tests.mqtt_helpers import env

PG_ADMIN = os.environ.get("SHELFGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def wait_until(
    cond: Callable[[], bool],
    timeout: float,
    what: str,
    step: float = 0.1,
    show: Callable[[], object] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    state = f" (at the end: {show()})" if show is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{state}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"shelfgate_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"the tests need PostgreSQL at {PG_ADMIN}: {e}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute(sql, args).fetchall()  # type: ignore[arg-type]


def scalar(url: str, sql: str, *args: Any) -> Any:
    try:
        rows = query(url, sql, *args)
    except psycopg.errors.UndefinedTable:
        return None
    return rows[0][0] if rows else None


class ConsumerProc:
    """`shelfgate consume` as a child process, its log in a file (a pipe could fill and block)."""

    def __init__(self, workdir: Path, broker_url: str, db_url: str, client_id: str, *extra: str):
        self.log = workdir / f"consume-{client_id}.log"
        self.args = shelfgate(
            "consume", "--broker", broker_url, "--db", db_url, "--client-id", client_id, *extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_subscribed: bool = True) -> ConsumerProc:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=env(), stderr=fh)
        self.starts += 1
        if wait_subscribed:
            wait_until(
                lambda: self.text().count("subscribed to") >= self.starts,
                30,
                f"{self.log.name} to subscribe",
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return -1 if self.proc is None else int(self.proc.returncode)
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"consumer did not stop:\n{self.text()[-2000:]}") from None

    def stored(self) -> int:
        """Events this process reported stored in its last stats line."""
        found = re.findall(r"(\d+) events stored", self.text())
        return int(found[-1]) if found else 0
