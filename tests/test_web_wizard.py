"""The calibration wizard walked in a real headless Chromium against the real daemon: a simulated
store (a few shoppers) plus a technician's reference beacon heard by networked receivers (real
Theengs messages through the real mosquitto), moved to each zone the wizard asks for. The walk
ends in a calibration applied to the running daemon, equal to what `shelfgate calibrate` makes
of the files the wizard recorded, and kept across a restart."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from positioning.frames import ibeacon_payload

from .conftest import ROOT, shelfgate
from .mqtt_helpers import env
from .network_helpers import client, theengs_message
from .test_web import browser, page_for  # noqa: F401 (the browser fixture)
from .web_helpers import ARTIFACTS, LAYOUT, Daemon, daemon, wait_for

SHOTS = ROOT / "out" / "screenshots"
UUID = "5e1f0a57-cafe-4b1d-9a11-7e57ca11b4a7"
TAG = f"ibeacon:{UUID}:7:7"
LAYOUT_DATA = tomllib.loads(LAYOUT.read_text())
RECEIVERS = [(r["id"], r["x"], r["y"], r.get("z", 2.5)) for r in LAYOUT_DATA["receivers"]]
ZONES = {z["id"]: z for z in LAYOUT_DATA["zones"]}
STAND_S = 2


class Technician:
    """Carries the reference beacon: every receiver in range hears it 5 times a second with a
    log-distance level (per-receiver gains, 2 dB noise) from where it stands now."""

    def __init__(self, port: int, x: float, y: float) -> None:
        self.pos = (x, y)
        self.height = 2.95  # held to a receiver, as the wizard says, until the first move
        self.sent = 0
        self._port = port
        self._stop = threading.Event()
        self._rng = np.random.default_rng(11)
        self._gain = {rx: float(self._rng.normal(0, 2.5)) for rx, *_ in RECEIVERS}
        self._mfg = {"76": ibeacon_payload(UUID, 7, 7).hex()}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Technician:
        self._client = client(self._port, "technician-nodes")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.loop_stop()
        self._client.disconnect()

    def move(self, x: float, y: float) -> None:
        self.pos = (x, y)
        self.height = 1.1
        time.sleep(0.5)  # messages from the old spot have arrived; the technician stands still

    def _run(self) -> None:
        while not self._stop.is_set():
            x, y = self.pos
            h = self.height
            for rx, rx_x, rx_y, rz in RECEIVERS:
                d = math.sqrt((x - rx_x) ** 2 + (y - rx_y) ** 2 + (rz - h) ** 2)
                rssi = -58 + self._gain[rx] - 22 * math.log10(max(d, 0.2))
                rssi += float(self._rng.normal(0, 2.0))
                if rssi < -94:
                    continue
                line = {
                    "rx": rx,
                    "addr": "C0:FF:EE:00:00:07",
                    "rssi": round(rssi),
                    "mfg": self._mfg,
                }
                self._client.publish(*theengs_message(line))
                self.sent += 1
            self._stop.wait(0.2)


def centroid(zone: dict[str, Any]) -> tuple[float, float]:
    pts = np.array(zone["polygon"], dtype=float)
    return float(pts[:, 0].mean()), float(pts[:, 1].mean())


def shot(page: Any, name: str) -> None:
    for folder in (SHOTS, ARTIFACTS):
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"wizard-{name}.png"), full_page=True)


def test_a_full_wizard_walk_ends_in_an_applied_calibration(
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    with daemon(tmp_path, shoppers=3, extra_sources=("theengs:{broker}",)) as gw:
        applied = _walk(gw, tmp_path, browser)
    # restarted: the daemon starts with what the wizard applied
    with daemon(tmp_path, shoppers=2) as gw:
        status = gw.state_of("/api/v1/calibration")
        assert status["active"]["source"] == "applied in the web app"
        assert status["active"]["fingerprint"] == fingerprint(applied)


def _walk(gw: Daemon, d: Path, chromium: Any) -> dict[str, Any]:
    rx01 = RECEIVERS[0]
    with Technician(gw.broker_port, rx01[1], rx01[2]) as tech:
        page = page_for(chromium, gw, viewport={"width": 1280, "height": 900})
        page.click("#wz-open")
        # the reference beacon held up to rx01 is the loudest tag the wizard lists
        page.wait_for_function(
            "document.querySelector('#wz-candidates button[data-candidate]')"
            "?.textContent.endsWith('at rx01')",
            timeout=30_000,
        )  # as a technician does: the loudest tag is heard at the receiver they hold it to
        page.fill("#wz-stand-s", str(STAND_S))
        shot(page, "1-choose")
        page.click("#wz-strongest")
        page.wait_for_selector("#wizard[data-state=walking]", timeout=10_000)
        stood: list[str] = []
        while True:
            zone = page.get_attribute("#wz-prompt", "data-zone")
            if not zone:
                break
            assert zone not in stood, f"the wizard asked for {zone} twice"
            tech.move(*centroid(ZONES[zone]))
            page.click("#wz-go")
            page.wait_for_selector("#wz-countdown:not([hidden])", timeout=5_000)
            if len(stood) == 3:  # the coverage of a stand under way
                page.wait_for_function(
                    "[...document.querySelectorAll('#wz-coverage td:nth-child(2)')]"
                    ".some((td) => parseInt(td.textContent) > 0)"
                    " && document.querySelector('#wz-countdown div').style.width !== '0%'",
                    timeout=5_000,
                )
                shot(page, "2-stand")
            page.wait_for_selector(f'#wz-zones li[data-zone-step="{zone}"].done', timeout=10_000)
            stood.append(zone)
        assert sorted(stood) == sorted(ZONES), "the walk did not cover every zone"
        assert page.inner_text("#wz-progress").startswith(f"{len(ZONES)} of {len(ZONES)}")
        page.click("#wz-fit")
        page.wait_for_selector("#wizard[data-state=fitted]", timeout=30_000)
        shot(page, "3-report")
        assert page.inner_text("#wz-verdict").startswith("Verdict:")
        new_right = page.inner_text('#wz-compare tr[data-compare="new"] td.num')
        assert new_right.endswith(f"of {len(ZONES)}")
        for rx, *_ in RECEIVERS:
            assert page.query_selector(f'#wz-receivers tr[data-receiver-result="{rx}"]')
        status = gw.state_of("/api/v1/calibration")
        confusion = status["report"]["confusion"]
        assert sum(map(sum, confusion["matrix"])) == len(ZONES)  # one stand per zone
        before = status["active"]["fingerprint"]
        page.click("#wz-apply")
        page.wait_for_selector("#wizard[data-state=applied]", timeout=10_000)
        shot(page, "4-applied")
        assert not page.errors, page.errors

    # the running pipeline decides with the applied calibration: no restart
    status = gw.state_of("/api/v1/calibration")
    applied = json.loads((d / "data" / "calibration.json").read_text())
    assert status["active"]["source"] == "applied in the web app"
    assert status["active"]["fingerprint"] == fingerprint(applied) != before
    assert "calibration from" in gw.log.read_text() and gw.proc.poll() is None

    # the walk's files, as `shelfgate calibrate` reads them, give the same calibration
    walk = Path(status["folder"])
    labels = [orjson.loads(x) for x in (walk / "labels.jsonl").read_bytes().splitlines()]
    assert sorted(x["zone"] for x in labels) == sorted(ZONES)
    assert {x["tag"] for x in labels} == {TAG}
    trace = [orjson.loads(x) for x in (walk / "trace.jsonl").read_bytes().splitlines()]
    assert trace and {x["addr"] for x in trace} == {"C0:FF:EE:00:00:07"}  # nobody else's
    assert all(x["end"] - x["start"] == pytest.approx(STAND_S, abs=0.01) for x in labels)
    out = d / "cli-calibration.json"
    r = subprocess.run(
        shelfgate("calibrate", "--layout", str(LAYOUT), "--trace", str(walk / "trace.jsonl"),
                  "--labels", str(walk / "labels.jsonl"), "--out", str(out)),
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == applied
    return applied


def test_the_newer_of_applied_and_configured_calibration_wins(tmp_path: Path) -> None:
    import os

    from gateway.startup import applied_calibration

    data, conf = tmp_path / "data", tmp_path / "cal.json"
    assert applied_calibration(str(data), None) is None
    assert applied_calibration(str(data), str(conf)) == str(conf)  # missing: its error shows
    data.mkdir()
    (data / "calibration.json").write_text("{}")
    os.utime(data / "calibration.json", (1000, 1000))
    assert applied_calibration(str(data), None) == str(data / "calibration.json")
    assert applied_calibration(str(data), str(conf)) == str(conf)
    conf.write_text("{}")
    os.utime(conf, (900, 900))
    assert applied_calibration(str(data), str(conf)) == str(data / "calibration.json")
    os.utime(conf, (1100, 1100))  # an installer put a newer calibration in place
    assert applied_calibration(str(data), str(conf)) == str(conf)


def fingerprint(calibration: dict[str, Any]) -> str:
    from gateway.web.wizard import model_fingerprint
    from positioning.pathloss import RadioModel

    # as the daemon holds it: read back from the file's radio_model
    return model_fingerprint(RadioModel.from_json(calibration["radio_model"]).to_json())


def test_wizard_requests_are_checked(tmp_path: Path) -> None:
    with daemon(tmp_path, shoppers=3) as gw:
        assert gw.post("/api/v1/calibration/stand", {"zone": "fasteners"})[0] == 409
        code, body = gw.post("/api/v1/calibration/start", {"beacon": "p:nope", "stand_s": 30})
        assert (code, b"not heard" in body) == (409, True)
        tag = wait_for(
            "a tag to choose",
            lambda: next(iter(gw.state_of("/api/v1/calibration")["candidates"]), None),
            30.0,
        )["tag"]
        code, body = gw.post("/api/v1/calibration/start", {"beacon": tag, "stand_s": 0.5})
        assert (code, body.startswith(b"stand_s: expected 2 to 600")) == (409, True), body
        assert gw.post("/api/v1/calibration/fit", None, form=True)[0] == 415
        assert gw.post("/api/v1/calibration/nope", {})[0] == 404
        assert gw.post("/api/v1/calibration/start", {}, auth=None)[0] == 401
        code, body = gw.post("/api/v1/calibration/start", {"beacon": tag, "stand_s": 30})
        assert code == 200 and orjson.loads(body)["state"] == "walking", body
        code, body = gw.post("/api/v1/calibration/stand", {"zone": "nowhere"})
        assert (code, b"not a zone" in body) == (409, True)
        code, body = gw.post("/api/v1/calibration/fit", {})
        assert (code, b"at least 2 zones" in body) == (409, True)
        assert orjson.loads(gw.post("/api/v1/calibration/discard", {})[1])["state"] == "idle"
