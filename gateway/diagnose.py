"""`shelfgate diagnose` and the `diagnose` command: one redacted JSON bundle for support.

One JSON file, not a tarball: support reads it in any editor or with `jq`, a ticket takes it as
an attachment, the `diagnose` command's MQTT reply carries the same object, and a scan for
secrets (ours in the tests, a support engineer's before forwarding it) is one grep.

What it holds: versions (shelfgate, Python, key libraries, SQLite, OS, board, BlueZ), the
effective configuration without secrets, the pushed configuration's state, the outbox's figures
and the daemon's last written state (link, receivers), `shelfgate check`'s output, the data
dir's files (names and sizes), and the last log lines (the journal, else `gateway.log_file`).

Redaction, twice: secret keys are replaced by "<redacted>" and raw tag addresses by a count
in the configuration; then the whole text is scrubbed of every secret's value (the MQTT and
source passwords, the privacy key, the gateway's pseudonym key, the web password and token) and
of anything shaped like a raw tag id or a Bluetooth address.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from gateway import __version__
from gateway.config import GatewayConfig

REDACTED = "<redacted>"
LIBRARIES = ("numpy", "orjson", "paho-mqtt", "bleak", "dbus-fast", "pyserial", "aiohttp",
             "prometheus-client", "sqlite-utils")  # fmt: skip
SECRET_KEYS = {"password", "secret"}
RAW_IDS = (
    re.compile(r"\b(?:ibeacon|altbeacon):[0-9A-Fa-f-]{36}:\d+:\d+"),
    re.compile(r"\beddystone:[0-9A-Fa-f]{20}:[0-9A-Fa-f]{12}"),
    re.compile(r"\b(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b"),  # a Bluetooth / MAC address
)
LOG_LINES = 200
CHECK_TIMEOUT_S = 60.0


def bundle(
    cfg: GatewayConfig,
    remote: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    log_lines: int = LOG_LINES,
    check: bool = True,
    check_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The bundle, redacted (blocking: subprocesses and files; run it off the event loop)."""
    data_dir = Path(cfg.gateway.data_dir)
    out: dict[str, Any] = {
        "bundle": 1,
        "host": socket.gethostname(),
        "versions": versions(),
        "config": redacted_config(cfg),
        "remote_config": remote,
        "status": status if status is not None else outbox_status(cfg),
        "data_dir": data_files(data_dir),
        "check": check_output(cfg, check_args) if check else None,
        "log": log_tail(cfg, log_lines),
    }
    return scrub(out, secrets_of(cfg))


# ------------------------------------------------------------------ parts


def versions() -> dict[str, Any]:
    libs: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libs[name] = None
    out: dict[str, Any] = {
        "shelfgate": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "libraries": libs,
        "sqlite": sqlite3.sqlite_version,
        "os": _os_release(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "board": _read("/proc/device-tree/model"),
        "bluez": _bluez(),
    }
    return out


def redacted_config(cfg: GatewayConfig) -> dict[str, Any]:
    raw = dataclasses.asdict(cfg)

    def walk(d: dict[str, Any]) -> dict[str, Any]:
        for k, v in d.items():
            if k in SECRET_KEYS and v is not None:
                d[k] = REDACTED
            elif isinstance(v, dict):
                walk(v)
        return d

    walk(raw)
    for src in raw["sources"]:
        walk(src)
    addresses = raw["pipeline"]["registered_addresses"]
    raw["pipeline"]["registered_addresses"] = f"{len(addresses)} addresses ({REDACTED})"
    return raw


def outbox_status(cfg: GatewayConfig) -> dict[str, Any] | str:
    from gateway.outbox import read_status

    db = cfg.outbox_path
    if not db.exists():
        return f"no outbox at {db}"
    try:
        return read_status(db, wait_s=1.0)
    except (sqlite3.Error, Exception) as e:
        return f"cannot read {db}: {e}"


def data_files(data_dir: Path) -> dict[str, int] | str:
    try:
        return {p.name: p.stat().st_size for p in sorted(data_dir.iterdir()) if p.is_file()}
    except OSError as e:
        return f"cannot list {data_dir}: {e.strerror}"


def check_output(cfg: GatewayConfig, setup_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """`shelfgate check` with the same setup options (`setup_args`: the command line's), as a
    child process (it prints; its MQTT probe and networked receivers take seconds)."""
    args = [sys.executable, "-m", "gateway.cli", "check", *setup_args]
    try:
        r = subprocess.run(
            args, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"exit": None, "output": [f"check did not finish: {e}"]}
    return {"exit": r.returncode, "output": (r.stdout + r.stderr).splitlines()}


def log_tail(cfg: GatewayConfig, n: int) -> dict[str, Any]:
    """The last `n` lines: the journal of shelfgate.service when there is one, else the log
    file configured in gateway.log_file."""
    if shutil.which("journalctl"):
        try:
            r = subprocess.run(
                ["journalctl", "-u", "shelfgate.service", "-n", str(n), "--no-pager",
                 "-o", "short-iso"],
                capture_output=True, text=True, timeout=15.0, check=False,
            )  # fmt: skip
            lines = [x for x in r.stdout.splitlines() if x and not x.startswith("-- ")]
            if r.returncode == 0 and lines:
                return {"from": "journalctl -u shelfgate.service", "lines": lines}
        except (OSError, subprocess.TimeoutExpired):
            pass
    if cfg.gateway.log_file is not None:
        try:
            with open(cfg.gateway.log_file, encoding="utf-8", errors="replace") as fh:
                return {
                    "from": cfg.gateway.log_file,
                    "lines": [x.rstrip("\n") for x in deque(fh, n)],
                }
        except OSError as e:
            return {"from": cfg.gateway.log_file, "lines": [], "error": e.strerror}
    return {"from": None, "lines": [], "error": "no journal and no gateway.log_file"}


# ------------------------------------------------------------------ redaction


def secrets_of(cfg: GatewayConfig) -> list[str]:
    """Every secret value the gateway knows of (to scrub from the whole bundle)."""
    found: list[str | None] = [cfg.mqtt.password, cfg.privacy.secret]
    files = [cfg.mqtt.password_file, cfg.privacy.secret_file, cfg.web.password_file,
             cfg.web.token_file, str(Path(cfg.gateway.data_dir) / "pseudonym.key")]  # fmt: skip
    for s in cfg.sources:
        found.append(s.password)
        files.append(s.password_file)
    for f in files:
        if f is not None:
            found.append(_read(f))
    return sorted({s for s in found if s and len(s) >= 4}, key=len, reverse=True)


def scrub(obj: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    text = orjson.dumps(obj).decode()
    for s in secrets:
        text = text.replace(orjson.dumps(s).decode()[1:-1], REDACTED)
    for pattern in RAW_IDS:
        text = pattern.sub("<raw id>", text)
    out: dict[str, Any] = orjson.loads(text)
    return out


def shortened(b: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The bundle cut to fit `max_bytes` of JSON (an MQTT reply): log lines go first (oldest
    first), then check's output, then the configuration (a summary says what was left out)."""
    out = dict(b)
    lines = list((out.get("log") or {}).get("lines", []))
    while len(orjson.dumps(out)) > max_bytes and lines:
        lines = lines[len(lines) // 2 + 1 :] if len(lines) > 1 else []
        out["log"] = {**out["log"], "lines": lines, "shortened": True}
    for key in ("check", "data_dir", "config", "status"):
        if len(orjson.dumps(out)) <= max_bytes:
            break
        out[key] = "left out to fit the reply; run `shelfgate diagnose` on the gateway"
    return out


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip().strip("\0")
    except OSError:
        return None


def _os_release() -> str | None:
    text = _read("/etc/os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m.group(1) if m else platform.platform()


def _bluez() -> str | None:
    for cmd in (["bluetoothctl", "--version"], ["/usr/libexec/bluetooth/bluetoothd", "--version"],
                ["/usr/sbin/bluetoothd", "--version"]):  # fmt: skip
        if shutil.which(cmd[0]) is None:
            continue
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=5.0, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    return None


def write_private(path: str, body: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
