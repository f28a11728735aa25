"""A real mosquitto per test on a free port, and a QoS 1 consumer with a persistent session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(
        self, workdir: Path, extra: str = "", persistence: bool = False, port: int | None = None
    ) -> None:
        self.dir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None

    def conf(self) -> Path:
        # when started as root mosquitto drops to user "mosquitto", who cannot write the test's
        # persistence folder: stay the user we are
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_inflight_messages 100",
            f"user {__import__('getpass').getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.dir}/",
                "autosave_interval 1",
            ]
        lines.append(self.extra)
        p = self.dir / "mosquitto.conf"
        p.write_text("\n".join(lines) + "\n")
        return p

    def start(self) -> Broker:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf())], stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError as e:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto died: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                    ) from e
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class Consumer:
    """Subscribes QoS 1 with a persistent session; records every events message and status."""

    def __init__(
        self, port: int, topic: str = "shelfgate/#", client_id: str = "backend-test"
    ) -> None:
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.status: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._props = props
        self.c.reconnect_delay_set(0.2, 1.0)

    def start(self) -> Consumer:
        self.c.connect("127.0.0.1", self.port, 30, clean_start=False, properties=self._props)
        self.c.loop_start()
        deadline = time.time() + 5
        while not self.c.is_connected() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        return self

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

    def wait_for_dwells(self, n: int, timeout: float) -> bool:
        """Waits until at least `n` dwell events came (False after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if sum(e["type"] == "dwell" for e in self.events) >= n:
                    return True
            time.sleep(0.05)
        return False

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        with self.lock:
            if msg.topic.endswith("/events"):
                self.messages.append(body)
                self.events.extend(body["events"])
            elif msg.topic.endswith("/status"):
                self.status.append(body)

    def event_ids(self) -> set[str]:
        with self.lock:
            return {e["event_id"] for e in self.events}

    def wait_for(self, n: int, timeout: float = 60.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.event_ids()) >= n:
                return True
            time.sleep(0.1)
        return False


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.stderr.read().decode() if proc.stderr else ""
        raise AssertionError(f"daemon did not exit in {timeout} s:\n{out[-3000:]}") from None


def terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """A daemon's end of test: SIGTERM if it still runs, then kill if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["SHELFGATE_CLOCK_SYNCED"] = "1"
    return e
