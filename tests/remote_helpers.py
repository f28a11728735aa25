"""A real daemon (its own process) on a real mosquitto, and a backend-side controller that
pushes configurations, sends commands and reads the retained status and the replies."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .conftest import ROOT, shelfgate
from .mqtt_helpers import Broker, env, terminate
from .web_helpers import wait_for

LAYOUT = ROOT / "config" / "layout.toml"
STORE = "hb-neumuenster"
SECRET = "store-secret-7f3a9c2e51d04b88"  # privacy.secret
PASSWORD = "mqtt-pw-5b7e1d9c3a"  # mqtt.password
ADDRESS = "C0:FF:EE:12:34:56"  # a registered store tag's raw address


def gateway_toml(
    d: Path, broker: str, gw: str = "gw-rc", extra: str = "", secret: bool = True,
    username: str = "gw",
) -> Path:  # fmt: skip
    cfg = d / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "{gw}"
data_dir = "{d / "data"}"
log_file = "{d / "gateway.log"}"
log_level = "debug"
[privacy]
{f'secret = "{SECRET}"' if secret else ""}
[pipeline]
min_dwell_s = 100000.0
registered_addresses = ["{ADDRESS}"]
[mqtt]
broker = "{broker}"
username = "{username}"
password = "{PASSWORD}"
connect_delay_max_s = 0.0
backoff_base_s = 0.2
backoff_cap_s = 1.0
[remote]
confirm_s = 4.0
{extra}
""")
    return cfg


@dataclass
class Backend:
    """The backend's side of the contract: a plain paho client on the same broker."""

    port: int
    base: str
    auth: tuple[str, str] | None = None
    status: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             protocol=mqtt.MQTTv5)  # fmt: skip
        self.c.on_message = self._on_message
        if self.auth is not None:
            self.c.username_pw_set(*self.auth)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"{self.base}/status", 1), (f"{self.base}/replies", 1), (f"{self.base}/events", 1)]
        )
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        assert subscribed.wait(5), "backend did not subscribe"

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        body = orjson.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/status"):
                self.status.append(body)
            elif msg.topic.endswith("/replies"):
                self.replies[str(body.get("id"))] = body
            elif msg.topic.endswith("/events"):
                self.events.extend(body["events"])

    def push_config(self, version: int, config: dict[str, Any], raw: bytes | None = None) -> None:
        body = raw or orjson.dumps({"schema": 1, "version": version, "config": config})
        self.c.publish(f"{self.base}/config", body, qos=1, retain=True).wait_for_publish(5)

    def command(self, command: str, args: dict[str, Any] | None = None, retain: bool = False,
                cid: str | None = None) -> str:  # fmt: skip
        cid = cid or f"cmd-{uuid.uuid4()}"
        msg = {"id": cid, "command": command, "args": args or {}}
        self.c.publish(f"{self.base}/commands", orjson.dumps(msg), qos=1, retain=retain
                       ).wait_for_publish(5)  # fmt: skip
        return cid

    def reply(self, cid: str, timeout: float = 30.0) -> dict[str, Any]:
        def got() -> dict[str, Any] | None:
            with self.lock:
                return self.replies.get(cid)

        return wait_for(f"the reply to {cid}", got, timeout)

    def latest_status(self) -> dict[str, Any] | None:
        with self.lock:
            return self.status[-1] if self.status else None

    def status_where(self, what: str, pred: Callable[[dict[str, Any]], bool],
                     timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        def probe() -> dict[str, Any] | None:
            with self.lock:
                for st in reversed(self.status):
                    if st.get("online") and pred(st):
                        return st
            return None

        return wait_for(what, probe, timeout)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    broker: Broker
    backend: Backend
    config: Path
    dir: Path

    def log(self) -> str:
        return (self.dir / "daemon.out").read_text(errors="replace")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"the daemon died:\n{self.log()[-4000:]}"


@contextmanager
def running_daemon(d: Path, extra: str = "", shoppers: int = 20, web: str | None = None,
                   secret: bool = True, broker_extra: str = "", username: str = "gw",
                   backend_auth: tuple[str, str] | None = None, layout: Path = LAYOUT,
                   source: str | None = None) -> Iterator[Running]:  # fmt: skip
    broker = Broker(d, extra=broker_extra).start()
    cfg = gateway_toml(d, broker.url, extra=extra, secret=secret, username=username)
    backend = Backend(broker.port, f"shelfgate/v1/{STORE}/gw-rc", backend_auth)
    args = ["run", "--config", str(cfg), "--layout", str(layout),
            "--source", source or f"sim:{LAYOUT}?shoppers={shoppers}&seed=5"]  # fmt: skip
    if web is not None:
        args += ["--web", web]
    with (d / "daemon.out").open("wb") as out:
        proc = subprocess.Popen(shelfgate(*args), cwd=ROOT, env=env(), stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    r = Running(proc, broker, backend, cfg, d)
    try:
        backend.status_where("the daemon's first status", lambda st: True)
        yield r
    finally:
        terminate(proc)
        backend.stop()
        broker.stop()


def pid_of_status(r: Running) -> int:
    """The daemon's pid as it wrote it in its outbox's state (`shelfgate status --json`)."""
    out = subprocess.run(shelfgate("status", "--config", str(r.config), "--json"), cwd=ROOT,
                         capture_output=True, check=True, env=env())  # fmt: skip
    return int(orjson.loads(out.stdout)["state"]["pid"])


def until(what: str, pred: Callable[[], bool], timeout: float = 30.0) -> None:
    wait_for(what, lambda: True if pred() else None, timeout)
