"""The MQTT subscriber of a networked-receiver source: a paho-mqtt 2.x client on its own network
thread (the only code of the source that calls paho). Its callbacks never raise (an exception
would end paho's thread) and hand their result to the event loop through an `Inbox`, the one
place that crosses threads.

Reconnects use full-jitter exponential backoff (RELIABILITY R8), at least a minute after an
authentication refusal. QoS 0, clean session: a receiver's advertisement that is late is worth
nothing, so nothing is queued for us at the broker while we are away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from gateway.mqtt.settings import LinkSettings, full_jitter, make_client

log = logging.getLogger(__name__)

AUTH_RETRY_S = 60.0
AUTH_FAILURES = {134, 135, 4, 5}


class Inbox:
    """Items from the network thread to the event loop: `put` (thread) appends and wakes the
    loop at most once per batch; `take` (loop) swaps the list. Bounded: past `limit` pending
    items the newest are refused (`put` returns False) until the loop catches up."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: Callable[[], None] = lambda: None

    def bind(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self._loop, self._wake = loop, wake

    def put(self, item: Any) -> bool:
        with self._lock:
            if len(self._items) >= self.limit:
                return False
            self._items.append(item)
            if self._signalled:
                return True
            self._signalled = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us (shutdown)
                loop.call_soon_threadsafe(self._wake)
        return True

    def pending(self) -> bool:
        return bool(self._items)

    def take(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
            self._signalled = False
        return items


class BufferedClient(mqtt.Client):
    """paho's client reading its socket 64 KiB at a time. paho asks the socket for each packet
    piece by piece (one byte of type, the length a byte at a time, then the body) and handles one
    packet per select: three or more system calls per message, most of the CPU at thousands of
    small messages a second. Here those reads are served from one buffer."""

    _rbuf: bytes = b""
    _rpos: int = 0

    def buffered(self) -> bool:
        return self._rpos < len(self._rbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            chunk = super()._sock_recv(65536)  # BlockingIOError when there is nothing
            if not chunk:
                return chunk  # closed by the broker
            self._rbuf, self._rpos = chunk, 0
        pos = self._rpos
        out = self._rbuf[pos : pos + bufsize]
        self._rpos = pos + len(out)
        return out

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf, self._rpos = b"", 0  # nothing of the old connection's stream
        return super().reconnect()

    def fast_publishes(self, on_message: Callable[[str, bytes, bool], None]) -> int:
        """MQTT 3.1.1 QoS 0 PUBLISH packets complete in the buffer, handed to `on_message`
        directly: no MQTTMessage, no topic matching, no per-byte reads (most of paho's cost
        per message). Stops at anything else (another packet type, QoS > 0, a packet cut by
        the buffer's end) and at a packet paho has begun: paho reads those as before."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        if self._in_packet["command"] != 0 or pos >= end:
            return 0
        n = 0
        while pos < end:
            b0 = buf[pos]
            if b0 & 0xF6 != 0x30:  # PUBLISH, QoS 0 (dup and retain bits aside)
                break
            length, mult, i = 0, 1, pos + 1
            while i < end and i - pos <= 4:
                c = buf[i]
                length += (c & 127) * mult
                mult <<= 7
                i += 1
                if c < 128:
                    break
            else:
                break  # the length runs past the buffer (or is malformed: paho says so)
            if i + length > end or length < 2:
                break
            tlen = (buf[i] << 8) | buf[i + 1]
            if 2 + tlen > length:
                break  # malformed: paho's reader reports it
            try:
                topic = buf[i + 2 : i + 2 + tlen].decode()
            except UnicodeDecodeError:
                topic = ""  # brokers refuse such topics; never trust that: skipped
            pos = i + length
            if topic:
                on_message(topic, buf[i + 2 + tlen : pos], bool(b0 & 0x08))
            n += 1
        self._rpos = pos
        if n:
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()
        return n


class Subscriber:
    """Connects, subscribes `topic`, calls `on_message(topic, payload, dup)` on paho's thread."""

    def __init__(
        self,
        settings: LinkSettings,
        topic: str,
        on_message: Callable[[str, bytes, bool], None],
        on_state: Callable[[bool], None],
        name: str,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        """`topic` "": subscribe nothing (a node that only publishes); `will`: the retained
        last will (topic, payload), at QoS 1."""
        self.s = settings
        self.topic = topic
        self.name = name
        self._on_message = on_message
        self._on_state = on_state
        self._stop = threading.Event()
        self._rng = random.Random()
        self._client = cast(
            BufferedClient, make_client(settings, session=False, cls=BufferedClient)
        )
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._auth_refused = False
        self._thread = threading.Thread(target=self._run, name=f"mqtt {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """From any thread (paho queues it for its network thread); False while not connected."""
        if not self._client.is_connected():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # not connected: nothing to end
            self._client.disconnect()
        self._thread.join(10)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._client.connect(self.s.host, self.s.port, self.s.keepalive_s)
                self._serve()
                attempt = 0 if not self._auth_refused else attempt
            except Exception as e:  # refused, unreachable, TLS: retried
                log.warning("%s: broker %s:%d: %s", self.name, self.s.host, self.s.port, e)
            if self._stop.is_set():
                break
            delay = full_jitter(attempt, self.s.backoff_base_s, self.s.backoff_cap_s, self._rng)
            if self._auth_refused:
                delay = max(delay, AUTH_RETRY_S)
            attempt += 1
            self._stop.wait(delay)

    def _serve(self) -> None:
        """paho's loop (select, read, write, keepalive) until the connection ends; packets
        already buffered are handled first (select cannot see them)."""
        c = self._client
        ok = MQTTErrorCode.MQTT_ERR_SUCCESS
        fast = self._fast_message if self.s.protocol == "3.1.1" else None
        while not self._stop.is_set():
            while c.buffered():
                if fast is not None and c.fast_publishes(fast) and not c.buffered():
                    break
                if c.loop_read() != ok:
                    break
            if c.loop(timeout=1.0) != ok:
                return

    # paho callbacks, on the network thread: small, never raising
    def _connected(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        try:
            if rc.is_failure:
                self._auth_refused = rc.value in AUTH_FAILURES
                log.error("%s: broker refused the connection: %s", self.name, rc)
                client.disconnect()
                return
            self._auth_refused = False
            if self.topic:
                client.subscribe(self.topic, qos=0)
                log.info("%s: subscribed %s", self.name, self.topic)
            else:
                log.info("%s: connected to %s:%d", self.name, self.s.host, self.s.port)
            self._on_state(True)
        except Exception:
            log.exception("%s: on_connect", self.name)

    def _disconnected(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        try:
            if not self._stop.is_set():
                log.warning("%s: disconnected from the broker (%s)", self.name, rc)
            self._on_state(False)
        except Exception:
            log.exception("%s: on_disconnect", self.name)

    def _fast_message(self, topic: str, payload: bytes, dup: bool) -> None:
        try:
            self._on_message(topic, payload, dup)
        except Exception:
            log.exception("%s: message on %s", self.name, topic[:200])

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse such topics; never trust that
            return
        try:
            self._on_message(topic, bytes(msg.payload), bool(msg.dup))
        except Exception:
            log.exception("%s: message on %s", self.name, msg.topic[:200])
