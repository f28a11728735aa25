"""The real daemon with its web app on a free port, a real mosquitto, and plain HTTP requests."""

from __future__ import annotations

import base64
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, env, free_port, terminate

PASSWORD = "correct-horse-battery"
TOKEN = "tok-0123456789abcdef"
LAYOUT = ROOT / "config" / "layout.toml"
ARTIFACTS = ROOT / "tests" / "artifacts"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Probe until it returns something (not None); fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    https: ssl.SSLContext | None = None
    broker_port: int = 0

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"technician:{PASSWORD}".encode()).decode()

    def get(self, path: str, auth: str | None = "basic", timeout: float = 5.0) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path)
        if auth == "basic":
            req.add_header("Authorization", self.basic())
        elif auth is not None:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.https) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(
        self, path: str, body: object, auth: str | None = "basic", form: bool = False
    ) -> tuple[int, bytes]:
        """A POST with a JSON body (`form`: as an HTML form would send it)."""
        data = b"a=1" if form else orjson.dumps(body)
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        ctype = "application/x-www-form-urlencoded" if form else "application/json"
        req.add_header("Content-Type", ctype)
        if auth == "basic":
            req.add_header("Authorization", self.basic())
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.https) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def state_of(self, path: str) -> dict[str, Any]:
        status, body = self.get(path)
        assert status == 200, body
        out: dict[str, Any] = orjson.loads(body)
        return out

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """(sample name, sorted labels) -> value, parsed by prometheus_client's own parser."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        assert status == 200, body
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
        }

    def state(self) -> dict[str, Any]:
        status, body = self.get("/api/v1/state")
        assert status == 200, body
        out: dict[str, Any] = orjson.loads(body)
        return out


def write_config(d: Path, broker: str, web: str) -> Path:
    (d / "web-password").write_text(PASSWORD + "\n")
    (d / "web-token").write_text(TOKEN + "\n")
    cfg = d / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-web"
data_dir = "{d / "data"}"
[privacy]
secret = "test-secret-0123456789"
[pipeline]
min_dwell_s = 5.0
[mqtt]
broker = "{broker}"
connect_delay_max_s = 0.0
backoff_base_s = 0.2
backoff_cap_s = 1.0
[web]
{web}
""")
    return cfg


@contextmanager
def daemon(
    d: Path, web: str = 'password_file = "web-password"\ntoken_file = "web-token"',
    listen: str | None = None, shoppers: int = 20, https: ssl.SSLContext | None = None,
    layout: Path = LAYOUT, extra_sources: tuple[str, ...] = (),
) -> Iterator[Daemon]:  # fmt: skip
    """`extra_sources`: more source URIs, "{broker}" standing for the test broker's URL."""
    broker = Broker(d).start()
    port = int(listen.rsplit(":", 1)[1]) if listen else free_port()
    cfg = write_config(d, broker.url, web)
    log = d / "daemon.log"
    source = f"sim:{layout}?shoppers={shoppers}&seed=3"
    more = [a for s in extra_sources for a in ("--source", s.replace("{broker}", broker.url))]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            shelfgate("run", "--config", str(cfg), "--source", source, *more, "--layout",
                      str(layout), "--web", listen or f"127.0.0.1:{port}"),
            cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    dm = Daemon(proc, f"{'https' if https else 'http'}://127.0.0.1:{port}", log, https)
    dm.broker_port = broker.port
    try:

        def up() -> bool | None:
            assert proc.poll() is None, log.read_text()
            try:
                return True if dm.get("/healthz", auth=None, timeout=1.0)[0] == 200 else None
            except OSError:
                return None

        wait_for("the web app to answer /healthz", up, 30.0)
        yield dm
    finally:
        terminate(proc)
        broker.stop()
