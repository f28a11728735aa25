"""The MQTT connection: a paho-mqtt 2.x client driven by its own network thread, the only code
that ever calls into paho.

Why our own thread and select loop instead of `loop_start()`: paho's reconnect backoff has no
jitter, and a fleet of gateways would reconnect in lock-step after a broker restart (RELIABILITY
R8). Here: a random delay after start, full-jitter exponential backoff (base 1 s, cap 300 s),
and slow retries (at least a minute) after an authentication refusal.

The boundary: the event loop hands publish requests over with `publish()` (a queue and a wake-up
byte, nothing of paho's); each request carries the caller's ticket, and the outcome comes back
as a `Published(ticket)` or `Unsent(ticket)` event. paho's callbacks run on this thread, only
hand a small event to the loop with `call_soon_threadsafe`, and never raise (an exception would
kill the thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .settings import LinkSettings, full_jitter, make_client

log = logging.getLogger(__name__)

AUTH_FAILURES = {134, 135, 4, 5}  # v5 bad user/password, not authorized; v3 codes 4 and 5
SELECT_S = 1.0  # paho's keepalive bookkeeping (loop_misc) runs at least this often


@dataclass(frozen=True, slots=True)
class Connected:
    receive_maximum: int
    maximum_packet_size: int | None
    session_present: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A connection attempt failed: unreachable, TLS, or refused by the broker (in words)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Published:
    """The broker acknowledged (or, MQTT v5, refused) the message of `ticket`."""

    ticket: int
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Unsent:
    """paho would not take the message of `ticket` (it never went out)."""

    ticket: int
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retained: bool


LinkEvent = Connected | Disconnected | ConnectFailed | Published | Unsent | Message


@dataclass(frozen=True, slots=True)
class _Request:
    ticket: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


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
        self._requests: collections.deque[_Request] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._next_ticket = 0
        self._tickets: dict[int, int] = {}  # paho mid -> ticket (network thread only)
        self._connected = False  # network thread only
        self._auth_refused = False
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

    # ------------------------------------------------------------- event loop side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Queue a message for the network thread; returns its ticket. With QoS 1 it goes out
        when connected (paho keeps it across a reconnect of the same session)."""
        self._next_ticket += 1
        self._requests.append(_Request(self._next_ticket, topic, payload, qos, retain))
        self._wake()
        return self._next_ticket

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, disconnect cleanly, end the thread (blocking: run it in an
        executor)."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------------- network thread
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
            if not self._connect():
                delay = self._backoff()
                continue
            self._serve()
            if self._stop.is_set():
                break
            if self._connected:
                self._connected = False
                self._emit(Disconnected("connection lost"))
            delay = max(60.0, self._backoff()) if self._auth_refused else self._backoff()

    def _connect(self) -> bool:
        self.attempts += 1
        try:
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
        except ssl.SSLError as e:
            reason = f"TLS failed ({e.reason or e})"
        except OSError as e:
            reason = f"cannot reach {self.s.host}:{self.s.port} ({e.strerror or e})"
        else:
            return True
        log.warning("MQTT connect to %s:%d failed: %s", self.s.host, self.s.port, reason)
        self._emit(ConnectFailed(reason))
        return False

    def _serve(self) -> None:
        """One connection: select on paho's socket and our wake-up socket, until it drops or we
        stop (then what is queued goes out, and a DISCONNECT)."""
        c = self.client
        while True:
            sock = c.socket()
            if sock is None:
                return
            stopping = self._stop.is_set()
            if stopping:
                self._send_requests()
                with contextlib.suppress(Exception):
                    c.disconnect()
                for _ in range(5):  # let the DISCONNECT (and what is queued) go out
                    if c.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
                return
            try:
                r, w, _ = select.select(
                    [sock, self._wake_r], [sock] if c.want_write() else [], [], SELECT_S
                )
            except (OSError, ValueError):
                return
            if self._wake_r in r:
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)
            self._send_requests()
            rc = mqtt.MQTT_ERR_SUCCESS
            if sock in r:
                rc = c.loop_read()
                while (
                    rc == mqtt.MQTT_ERR_SUCCESS
                    and isinstance(sock, ssl.SSLSocket)
                    and sock.pending()
                ):
                    rc = c.loop_read()  # TLS may hold decrypted bytes select cannot see
            if rc == mqtt.MQTT_ERR_SUCCESS and (sock in w or c.want_write()):
                rc = c.loop_write()
            if rc == mqtt.MQTT_ERR_SUCCESS:
                rc = c.loop_misc()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return

    def _send_requests(self) -> None:
        while self._requests:
            req = self._requests.popleft()
            try:
                info = self.client.publish(req.topic, req.payload, qos=req.qos, retain=req.retain)
            except (ValueError, OSError) as e:
                self._emit(Unsent(req.ticket, str(e)))
                continue
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                if req.qos > 0:
                    self._tickets[int(info.mid)] = req.ticket
            else:
                reason = mqtt.error_string(info.rc)
                log.warning("paho refused a publish on %s: %s", req.topic, reason)
                self._emit(Unsent(req.ticket, reason))

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
                self._emit(ConnectFailed(f"the broker refused the connection: {rc}"))
                return
            self._auth_refused = False
            self.attempts = 0
            recv_max = 65535
            max_packet = None
            if props is not None:
                recv_max = int(getattr(props, "ReceiveMaximum", 65535) or 65535)
                mp = getattr(props, "MaximumPacketSize", None)
                max_packet = int(mp) if mp else None
            self._connected = True
            for topic in self.subscriptions:
                if self.s.protocol == "5":  # retain as published: a retained command is seen so
                    client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
                else:
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
            if self._connected:
                self._connected = False
                log.warning("MQTT disconnected: %s", rc)
                self._emit(Disconnected(str(rc)))
        except Exception:
            log.exception("on_disconnect failed")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        try:
            ticket = self._tickets.pop(mid, None)
            if ticket is None:
                return  # QoS 0, or a resend's second acknowledgement
            # paho also calls this for a failed v5 PUBACK (e.g. 0x87 not authorized)
            failed = bool(getattr(rc, "is_failure", False))
            self._emit(Published(ticket, not failed, str(rc)))
        except Exception:
            log.exception("on_publish failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._emit(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
        except Exception:
            log.exception("on_message failed")
