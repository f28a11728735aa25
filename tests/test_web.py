"""The technician web app in the real daemon (a simulated store in real time, a real mosquitto),
looked at by a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ConfigError, config_from_dict

from .mqtt_helpers import free_port
from .web_helpers import ARTIFACTS, LAYOUT, PASSWORD, TOKEN, Daemon, daemon, wait_for

CHROMIUM = Path("/usr/bin/chromium")
LAYOUT_DATA = tomllib.loads(LAYOUT.read_text())
RECEIVERS = {r["id"] for r in LAYOUT_DATA["receivers"]}
ZONES = {z["id"] for z in LAYOUT_DATA["zones"]}
PSEUDONYM = re.compile(r"p:[0-9a-f]{32}")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with daemon(tmp_path_factory.mktemp("web")) as d:
        yield d


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: scripts/test installs it (apt chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def page_for(browser: Any, gw: Daemon, **ctx: Any) -> Any:
    context = browser.new_context(
        http_credentials={"username": "technician", "password": PASSWORD}, **ctx
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(gw.url + "/")
    return page


# ---------------------------------------------------------------- authentication


def test_every_path_but_healthz_needs_credentials(gw: Daemon) -> None:
    for path in ("/", "/api/v1/state", "/metrics", "/api/v1/stream", "/static/app.js"):
        for auth in (
            None,
            "Basic " + __import__("base64").b64encode(b"technician:wrong").decode(),
            "Basic " + __import__("base64").b64encode(f"admin:{PASSWORD}".encode()).decode(),
            "Bearer not-the-token",
            "Basic !!!",
        ):
            status, _ = gw.get(path, auth=auth)
            assert status == 401, (path, auth)
    status, body = gw.get("/healthz", auth=None)
    assert (status, body) == (200, b"ok")
    assert gw.get("/api/v1/state", auth=f"Bearer {TOKEN}")[0] == 200
    assert gw.get("/api/v1/state")[0] == 200


def test_401_asks_the_browser_for_a_password(gw: Daemon) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(gw.url + "/", timeout=5)
    assert e.value.code == 401
    assert e.value.headers["WWW-Authenticate"].startswith("Basic ")


def test_without_credentials_only_loopback_listens(tmp_path: Path) -> None:
    lan = _lan_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback address")
    port = free_port()
    with daemon(tmp_path, web="", listen=f"0.0.0.0:{port}") as d:
        assert d.get("/api/v1/state", auth=None)[0] == 200  # on the gateway itself: no password
        with pytest.raises(OSError), socket.create_connection((lan, port), timeout=2):
            pass
        assert "listening on 127.0.0.1 only" in d.log.read_text()


def _lan_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing interface
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_web_config_is_validated() -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict({"web": {"listen": "8080", "cert_file": "x.pem", "colour": 1}}, "gw.toml")
    text = str(e.value)
    assert "web.listen" in text and "web.cert_file" in text and "web.colour" in text


# ---------------------------------------------------------------- API and metrics


def test_state_has_the_documented_shape(gw: Daemon) -> None:
    st = wait_for(
        "live tags in /api/v1/state", lambda: ((s := gw.state())["tags"] and s) or None, 30.0
    )
    assert set(st) == {"store", "gateway", "receivers", "zones", "tags", "outbox", "mqtt"}
    assert (st["store"], st["gateway"]) == ("hb-neumuenster", "gw-web")
    assert {r["id"] for r in st["receivers"]} == RECEIVERS
    for r in st["receivers"]:
        assert set(r) == {"id", "x", "y", "adverts_per_s", "last_heard_s", "state"}
        assert r["state"] in ("ok", "silent", "dead")
    assert {z["id"] for z in st["zones"]} == ZONES
    assert all(set(z) == {"id", "name", "polygon"} for z in st["zones"])
    for t in st["tags"]:
        assert set(t) == {"tag", "zone", "p", "since"}
        assert PSEUDONYM.fullmatch(t["tag"]), t["tag"]  # never a raw id
        assert t["zone"] is None or t["zone"] in ZONES
        assert 0.0 <= t["p"] <= 1.0
    assert set(st["outbox"]) == {"backlog", "oldest_s"}
    assert set(st["mqtt"]) == {"connected", "since"}
    wait_for("mqtt connected", lambda: gw.state()["mqtt"]["connected"] or None, 15.0)
    busy = wait_for(
        "receivers reporting adverts/s",
        lambda: [r for r in gw.state()["receivers"] if r["adverts_per_s"] > 0] or None,
        15.0,
    )
    assert all(r["state"] == "ok" and r["last_heard_s"] < 15 for r in busy)
    assert b"ibeacon:" not in gw.get("/api/v1/state")[1]


def test_metrics_parse_as_prometheus_text(gw: Daemon) -> None:
    wait_for("tracked tags", lambda: gw.state()["tags"] or None, 30.0)
    status, body = gw.get("/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "shelfgate_adverts", "shelfgate_receiver_last_heard_seconds", "shelfgate_tags_tracked",
        "shelfgate_events", "shelfgate_outbox_backlog_events",
        "shelfgate_outbox_oldest_unsent_seconds", "shelfgate_dropped_events",
        "shelfgate_mqtt_connected",
    ):  # fmt: skip
        assert name in fams, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values()
               for s in f.samples}  # fmt: skip
    adverts = {
        dict(k[1])["receiver"]: v for k, v in samples.items() if k[0] == "shelfgate_adverts_total"
    }
    assert set(adverts) == RECEIVERS and sum(adverts.values()) > 0
    assert samples[("shelfgate_tags_tracked", ())] > 0
    assert samples[("shelfgate_mqtt_connected", ())] == 1.0
    assert fams["shelfgate_adverts"].type == "counter"
    assert ("shelfgate_events_total", (("type", "dwell"),)) in samples
    # every event the pipeline makes is counted (dwell events: min_dwell_s = 5 here)
    wait_for(
        "dwell events counted",
        lambda: gw.metrics()[("shelfgate_events_total", (("type", "dwell"),))] > 0 or None,
        60.0,
    )


def test_tag_detail_api(gw: Daemon) -> None:
    tag = wait_for("a live tag", lambda: gw.state()["tags"] or None, 30.0)[0]["tag"]
    d = wait_for(
        "a zone decision in the tag's history",
        lambda: (x := orjson.loads(gw.get(f"/api/v1/tags/{tag}")[1]))["probs"]["t"] and x,
        15.0,
    )
    assert d["rssi"], "no sightings recorded"
    for rx, s in d["rssi"].items():
        assert rx in RECEIVERS and len(s["t"]) == len(s["raw"]) == len(s["filtered"]) > 0
    assert len(d["probs"]["p"][0]) == len(ZONES) + 1
    assert abs(sum(d["probs"]["p"][-1]) - 1.0) < 0.01
    assert gw.get("/api/v1/tags/p:nosuchtag")[0] == 404


# ---------------------------------------------------------------- in Chromium


def test_map_shows_the_layout_and_live_tags(gw: Daemon, browser: Any) -> None:
    page = page_for(browser, gw, viewport={"width": 1280, "height": 800})
    page.wait_for_selector("[data-tag]", timeout=30_000)  # live tags of the simulated store
    shown_rx = set(
        page.eval_on_selector_all(
            "#floor [data-receiver]", "els => els.map(e => e.dataset.receiver)"
        )
    )
    shown_zones = set(
        page.eval_on_selector_all("#floor [data-zone]", "els => els.map(e => e.dataset.zone)")
    )
    assert shown_rx == RECEIVERS
    assert shown_zones == ZONES
    page.wait_for_function(
        "() => document.querySelectorAll('#rx-table tbody tr').length > 0"
        " && document.querySelector('#live').textContent === 'live'"
    )
    # pushed, not fetched once: the page takes new state without reloading
    first = page.evaluate("() => document.body.dataset.updated")
    page.wait_for_function(f"() => document.body.dataset.updated > {first}", timeout=5_000)
    tags = set(page.eval_on_selector_all("#floor [data-tag]", "els => els.map(e => e.dataset.tag)"))
    assert all(PSEUDONYM.fullmatch(t) for t in tags)
    assert tags & {t["tag"] for t in gw.state()["tags"]}
    # the receivers are drawn to scale: rx01 (3, 7.5) and rx02 (3, 16.5) one above the other
    b1 = page.locator('[data-receiver="rx01"] .dot').bounding_box()
    b2 = page.locator('[data-receiver="rx02"] .dot').bounding_box()
    b3 = page.locator('[data-receiver="rx03"] .dot').bounding_box()
    assert abs(b1["x"] - b2["x"]) < 1 and b2["y"] > b1["y"]
    assert (b2["y"] - b1["y"]) / (b3["x"] - b1["x"]) == pytest.approx(9.0 / 6.0, rel=0.02)
    assert "MQTT connected" in page.text_content("#mqtt")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-map.png"), full_page=True)
    assert not page.errors


def test_tag_detail_plots(gw: Daemon, browser: Any) -> None:
    page = page_for(browser, gw, viewport={"width": 1280, "height": 900})
    page.wait_for_selector("#tags-table tbody tr", timeout=30_000)
    page.locator("#tags-table tbody tr").first.click()
    page.wait_for_selector(
        "#detail[open] #rssi-plots svg[data-receiver] path.filtered", timeout=15_000
    )
    page.wait_for_selector("#detail[open] #prob-plot path.prob", timeout=15_000)
    assert page.locator("#rssi-plots svg circle.raw").count() > 0
    d = page.locator("#rssi-plots path.filtered").first.get_attribute("d")
    assert d and d.startswith("M")
    page.screenshot(path=str(ARTIFACTS / "web-tag-detail.png"), full_page=False)
    assert not page.errors


def test_map_fits_a_phone(gw: Daemon, browser: Any) -> None:
    page = page_for(browser, gw, viewport={"width": 390, "height": 844}, is_mobile=True,
                    has_touch=True, device_scale_factor=2)  # fmt: skip
    page.wait_for_selector("[data-tag]", timeout=30_000)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    box = page.locator("#floor").bounding_box()
    assert box["width"] > 330  # the map takes the screen's width
    page.screenshot(path=str(ARTIFACTS / "web-phone.png"))
    assert not page.errors


# ---------------------------------------------------------------- TLS, shutdown


def test_https_and_a_prompt_stop_with_a_stream_open(tmp_path: Path) -> None:
    import http.client
    import signal
    import ssl
    import subprocess
    import time

    cert, key = tmp_path / "web.crt", tmp_path / "web.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    web = f'password_file = "web-password"\ncert_file = "{cert}"\nkey_file = "{key}"'
    ctx = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    with daemon(tmp_path, web=web, listen=f"127.0.0.1:{port}", https=ctx) as d:
        assert d.url.startswith("https://")
        assert d.get("/api/v1/state")[0] == 200
        with pytest.raises(http.client.RemoteDisconnected):  # plain http is not served
            plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            plain.request("GET", "/healthz")
            plain.getresponse()
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
        conn.request("GET", "/api/v1/stream", headers={"Authorization": d.basic()})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline().startswith(b"event: state")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        resp.read()  # the stream is ended properly (a cut one raises IncompleteRead)
        assert d.proc.wait(15) == 0, d.log.read_text()
        assert time.monotonic() - t0 < 8.0, "an open stream held up the shutdown"


def test_a_receiver_that_hears_nothing_turns_silent(tmp_path: Path, browser: Any) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text(LAYOUT.read_text() + '\n[[receivers]]\nid = "rx-far"\nx = 4000.0\ny = 12.0\n')
    with daemon(tmp_path, layout=layout) as d:

        def health() -> dict[str, Any] | None:
            rx = {r["id"]: r for r in d.state()["receivers"]}
            return rx if rx["rx-far"]["state"] == "silent" and rx["rx01"]["state"] == "ok" else None

        rx = wait_for("rx-far to be reported silent", health, 30.0)
        far = rx["rx-far"]
        assert (far["last_heard_s"] is None or far["last_heard_s"] > 15) and far[
            "adverts_per_s"
        ] == 0
        page = page_for(browser, d)
        page.wait_for_selector('[data-receiver="rx-far"].silent', timeout=10_000)
        page.wait_for_selector('[data-receiver="rx01"].ok', timeout=10_000)
        assert page.locator("#rx-table td.state-silent").count() == 1


def test_a_bad_web_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from .conftest import ROOT, shelfgate
    from .mqtt_helpers import env

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = f"127.0.0.1:{taken.getsockname()[1]}"
    for listen, says in (("nonsense", 'expected "HOST:PORT"'), (busy, "cannot listen")):
        r = subprocess.run(
            shelfgate("run", "--data-dir", str(tmp_path / "data"), "--web", listen,
                      "--broker", f"mqtt://127.0.0.1:{free_port()}"),
            cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 2, r.stderr
        errors = [x for x in r.stderr.splitlines() if x.startswith("shelfgate run:")]
        assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "web.listen" in errors[0] and says in errors[0], r.stderr
    taken.close()
