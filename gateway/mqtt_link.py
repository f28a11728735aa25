"""The MQTT connection: a paho-mqtt 2.x client driven by our own network thread.

Why our own thread instead of `loop_start()`: paho's reconnect backoff has no jitter and a
fleet of gateways would reconnect in lock-step after a broker restart (RELIABILITY.md R8).
Here: a random delay after start, full-jitter exponential backoff (base 1 s, cap 300 s), and
slow retries (at least a minute) after an authentication refusal.

Thread boundary: paho's callbacks run on this thread and only hand a small event to the
asyncio loop with `call_soon_threadsafe`; they never raise (an exception would kill the
thread). `publish()` is paho's own thread-safe call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from positioning.errors import InputError

log = logging.getLogger(__name__)

LOOPBACK = ("127.", "::1", "localhost")
AUTH_FAILURES = {134, 135, 4, 5}  # v5 bad user/password, not authorized; v3 codes 4 and 5


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    tls: bool
    client_id: str
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 60
    session_expiry_s: int = 3600
    connect_delay_max_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    max_inflight: int = 20


def parse_broker(
    uri: str, allow_plaintext: bool, source: str = "mqtt.broker"
) -> tuple[str, int, bool]:
    """mqtt://host:port or mqtts://host:port -> (host, port, tls). Plaintext only to loopback
    unless allowed explicitly: no silent plaintext to a real network."""
    parts = urlsplit(uri)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise InputError(source, uri, "expected mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    port = parts.port or (8883 if tls else 1883)
    host = parts.hostname
    if not tls and not allow_plaintext and not host.startswith(LOOPBACK):
        raise InputError(
            source,
            uri,
            "plaintext MQTT to a non-loopback host; use mqtts:// or set mqtt.allow_plaintext = true",
        )
    return host, port, tls


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """AWS-style full jitter: uniform(0, min(cap, base * 2^attempt))."""
    return rng.uniform(0.0, min(cap, base * (2.0 ** min(attempt, 30))))


@dataclass(frozen=True, slots=True)
class Connected:
    receive_maximum: int
    maximum_packet_size: int | None
    session_present: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Published:
    mid: int
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retained: bool


LinkEvent = Connected | Disconnected | Published | Message


def make_client(s: LinkSettings, client_id: str | None = None, session: bool = True) -> mqtt.Client:
    """A paho client for the configured broker: protocol, credentials and TLS (verification on:
    CA from the config or the system store; a client certificate for mutual TLS). `session`:
    keep the broker-side session (MQTT 3.1.1 clean_session off; v5 decides at connect)."""
    v5 = s.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=s.client_id if client_id is None else client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not session,
        reconnect_on_failure=False,
    )
    if s.username is not None:
        client.username_pw_set(s.username, s.password)
    if s.tls:
        client.tls_set(
            ca_certs=s.ca_file,
            certfile=s.cert_file,
            keyfile=s.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client


class MqttLink:
    def __init__(
        self,
        s: LinkSettings,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[LinkEvent], None],
        will: tuple[str, bytes] | None = None,
        rng: random.Random | None = None,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.s = s
        self.subscriptions = subscriptions
        self._loop = loop
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.attempts = 0
        self.client = make_client(s)
        self.client.max_inflight_messages_set(max(s.max_inflight, 1))
        self.client.max_queued_messages_set(0)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._auth_refused = False

    # ------------------------------------------------------------- thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            if self.connected:
                self.client.disconnect()
        except Exception:
            log.debug("disconnect failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = self._rng.uniform(0.0, self.s.connect_delay_max_s)
        log.info(
            "connecting to %s:%d in %.1f s (a random delay after start spreads a fleet's reconnects)",
            self.s.host,
            self.s.port,
            delay,
        )
        while not self._stop.is_set():
            if delay > 0 and self._stop.wait(delay):
                break
            self.attempts += 1
            try:
                props = None
                if self.s.protocol == "5":
                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    props.SessionExpiryInterval = self.s.session_expiry_s
                    self.client.connect(
                        self.s.host,
                        self.s.port,
                        self.s.keepalive_s,
                        clean_start=False,
                        properties=props,
                    )
                else:
                    self.client.connect(self.s.host, self.s.port, self.s.keepalive_s)
            except (OSError, ssl.SSLError) as e:
                log.warning("MQTT connect to %s:%d failed: %s", self.s.host, self.s.port, e)
                delay = self._backoff()
                continue
            while not self._stop.is_set():
                rc = self.client.loop(timeout=0.2)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
            if self._stop.is_set():
                # let a DISCONNECT go out cleanly
                for _ in range(5):
                    if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
                break
            if self.connected:
                self.connected = False
                self._emit(Disconnected("connection lost"))
            delay = max(60.0, self._backoff()) if self._auth_refused else self._backoff()

    def _backoff(self) -> float:
        return full_jitter(
            min(self.attempts, 20), self.s.backoff_base_s, self.s.backoff_cap_s, self._rng
        )

    def _emit(self, ev: LinkEvent) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self._on_event, ev)

    # ------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                self._auth_refused = rc.value in AUTH_FAILURES
                log.error("MQTT broker refused the connection: %s", rc)
                return
            self._auth_refused = False
            self.attempts = 0
            recv_max = 65535
            max_packet = None
            if props is not None:
                recv_max = int(getattr(props, "ReceiveMaximum", 65535) or 65535)
                mp = getattr(props, "MaximumPacketSize", None)
                max_packet = int(mp) if mp else None
            self.connected = True
            for topic in self.subscriptions:
                client.subscribe(topic, qos=1)
            log.info(
                "MQTT connected to %s:%d (receive maximum %d)", self.s.host, self.s.port, recv_max
            )
            self._emit(
                Connected(recv_max, max_packet, bool(getattr(flags, "session_present", False)))
            )
        except Exception:
            log.exception("on_connect failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if self.connected:
                self.connected = False
                log.warning("MQTT disconnected: %s", rc)
                self._emit(Disconnected(str(rc)))
        except Exception:
            log.exception("on_disconnect failed")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        try:
            # paho also calls this for a failed v5 PUBACK (e.g. 0x87 not authorized)
            failed = bool(getattr(rc, "is_failure", False))
            self._emit(Published(mid, not failed, str(rc)))
        except Exception:
            log.exception("on_publish failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._emit(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
        except Exception:
            log.exception("on_message failed")

    # ------------------------------------------------------------- asyncio side
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho. Returns its mid, or None when paho refused it outright.
        MQTT_ERR_NO_CONN with QoS 1 means queued, not dropped (it goes out after reconnect)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return int(info.mid)
        log.warning("paho refused a publish on %s: %s", topic, mqtt.error_string(info.rc))
        return None
