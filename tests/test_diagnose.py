"""`shelfgate diagnose` and the `diagnose` command: one JSON bundle with what support needs, and
nothing secret in it (the MQTT password, the privacy key, the gateway's pseudonym key, raw tag
ids and addresses), scanned for in the whole text."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson

from positioning.storesim import ALTBEACON_ID1, APP_UUID

from .conftest import ROOT, shelfgate
from .mqtt_helpers import env
from .remote_helpers import ADDRESS, LAYOUT, PASSWORD, SECRET, running_daemon, until

SECTIONS = {"bundle", "host", "versions", "config", "remote_config", "status", "data_dir",
            "check", "log"}  # fmt: skip


def leaks(text: str, secrets: list[str]) -> list[str]:
    low = text.lower()
    raw_ids = [APP_UUID, ALTBEACON_ID1, ADDRESS, ADDRESS.replace(":", "")]
    return [s for s in [*secrets, *raw_ids] if s.lower() in low]


def assert_useful(b: dict[str, Any]) -> None:
    assert set(b) >= SECTIONS, set(b)
    v = b["versions"]
    assert v["shelfgate"] and v["python"] and v["libraries"]["paho-mqtt"] and v["sqlite"]
    assert b["config"]["mqtt"]["password"] == "<redacted>"
    assert b["config"]["mqtt"]["username"] == "gw"  # not a secret: kept
    assert "redacted" in b["config"]["pipeline"]["registered_addresses"]
    assert "outbox.db" in b["data_dir"]
    assert b["check"]["output"] and b["check"]["output"][0] == "configuration"


def test_diagnose_bundle_is_useful_and_holds_no_secret(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as r:
        until(
            "tags tracked",  # (the `status` command also has the daemon write its state)
            lambda: r.backend.reply(r.backend.command("status"))["result"]["active_tags"] > 0,
        )
        # what a careless library might log: the bundle must still not carry it
        with (tmp_path / "gateway.log").open("a") as fh:
            fh.write(f"2026-12-01 DEBUG lib: CONNECT user=gw password={PASSWORD} "
                     f"tag=ibeacon:{APP_UUID}:1:7 from {ADDRESS.lower()} key={SECRET}\n")  # fmt: skip
        out = tmp_path / "bundle.json"
        p = subprocess.run(
            shelfgate("diagnose", "--config", str(r.config), "--layout", str(LAYOUT),
                      "--source", f"sim:{LAYOUT}?shoppers=20&seed=5", "--out", str(out)),
            cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert "secrets and raw ids redacted" in p.stdout
        assert out.stat().st_mode & 0o077 == 0  # private to its user
        text = out.read_text()
        assert leaks(text, [PASSWORD, SECRET]) == []
        b = orjson.loads(text)
        assert_useful(b)
        assert b["config"]["privacy"]["secret"] == "<redacted>"
        assert b["status"]["state"]["mqtt_state"] == "connected"
        assert set(b["status"]["state"]["receivers"]) >= {"rx01", "rx02"}
        assert b["log"]["from"] == str(tmp_path / "gateway.log") and len(b["log"]["lines"]) > 5
        assert (
            "CONNECT user=gw password=<redacted> tag=<raw id> from <raw id>"
            in b["log"]["lines"][-1]
        )
        assert b["check"]["exit"] == 0, b["check"]
        assert leaks(text, [PASSWORD, SECRET]) == []
        # a half-edited config (no sources) is what support is asked about: a bundle all the
        # same, whose check says what is missing
        p = subprocess.run(
            shelfgate("diagnose", "--config", str(r.config), "--layout", str(LAYOUT),
                      "--no-check", "--out", str(tmp_path / "half.json")),
            cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr


def test_diagnose_command_replies_with_the_bundle(tmp_path: Path) -> None:
    with running_daemon(tmp_path, secret=False) as r:
        key = (tmp_path / "data" / "pseudonym.key").read_text().strip()  # the gateway's own key
        assert len(key) >= 32
        with (tmp_path / "gateway.log").open("a") as fh:  # a careless log line
            fh.write(f"2026-12-01 DEBUG lib: derived with {key} for {ADDRESS}\n")
        rep = r.backend.reply(r.backend.command("diagnose", {"log_lines": 50}), timeout=90)
        assert rep["ok"] is True, rep
        text = orjson.dumps(rep).decode()
        assert leaks(text, [PASSWORD, key]) == []
        assert_useful(rep["result"])
        assert rep["result"]["status"]["gateway"] == "gw-rc"
        assert len(rep["result"]["log"]["lines"]) <= 50
        text = orjson.dumps(rep).decode()
        assert len(text) <= 64 * 1024
        assert leaks(text, [PASSWORD, key]) == []
        rep = r.backend.reply(r.backend.command("diagnose", {"log_lines": -1}))
        assert rep["ok"] is False and "args.log_lines" in rep["error"]
