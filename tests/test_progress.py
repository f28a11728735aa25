"""Long commands show progress on a terminal and nothing more in a pipe: `replay`, `calibrate`
and `report` run with stderr on a real pty pair, then on a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, shelfgate
from .mqtt_helpers import env

LAYOUT = ROOT / "config" / "layout.toml"


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("progress")
    for args in (
        ("simulate", "--layout", str(LAYOUT), "--shoppers", "5", "--duration", "120",
         "--trace", str(d / "trace.jsonl"), "--truth", str(d / "truth.jsonl")),
        ("simulate", "--layout", str(LAYOUT), "--calibration-walk", "--stand-s", "8",
         "--trace", str(d / "cal.jsonl"), "--truth", str(d / "labels.jsonl")),
    ):  # fmt: skip
        r = subprocess.run(shelfgate(*args), cwd=ROOT, env=env(), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
    return d


def commands(d: Path) -> dict[str, list[str]]:
    return {
        "replay": ["replay", str(d / "trace.jsonl"), "--layout", str(LAYOUT), "--events",
                   str(d / "ev.jsonl")],
        "calibrate": ["calibrate", "--layout", str(LAYOUT), "--trace", str(d / "cal.jsonl"),
                      "--labels", str(d / "labels.jsonl"), "--out", str(d / "cal.json")],
        "report": ["report", str(d / "trace.jsonl"), "--layout", str(LAYOUT), "--truth",
                   str(d / "truth.jsonl"), "--out", str(d / "report.html")],
    }  # fmt: skip


def on_a_terminal(args: list[str]) -> tuple[int, bytes]:
    """The command with stderr on a pty (stdout discarded): its exit code and what the terminal
    was sent."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        shelfgate(*args), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=slave
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(60), out


@pytest.mark.parametrize("cmd", ["replay", "calibrate", "report"])
def test_progress_on_a_terminal_only(walk: Path, cmd: str) -> None:
    args = commands(walk)[cmd]
    code, tty = on_a_terminal(args)
    assert code == 0, tty
    assert f"\r\x1b[K{cmd}:   0% [".encode() in tty, tty[:300]
    assert f"\r\x1b[K{cmd}: 100% [{'#' * 24}]".encode() in tty, tty[-600:]
    assert tty.count(b"\r\x1b[K") >= 3  # redrawn in place, then erased for the summary
    piped = subprocess.run(shelfgate(*args), cwd=ROOT, env=env(), capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert b"\r" not in piped.stderr and b"%" not in piped.stderr, piped.stderr
    assert f"{cmd}:".encode() not in piped.stderr
