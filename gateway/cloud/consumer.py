"""`shelfgate consume`: MQTT v5 shared subscription -> PostgreSQL, acknowledged after COMMIT.

Threads and the one boundary between them:
- the MQTT thread drives paho (`client.loop()`), and is the only thread that calls paho. Its
  callbacks only append an `Incoming` to the work queue (never raise, never block);
- the writer thread takes messages off the queue in arrival order, writes a batch in one
  transaction, and after COMMIT hands the batch's (connection, mid) pairs back to the MQTT thread,
  which sends the PUBACKs.

Why acks go back to the MQTT thread: a PUBACK must answer the PUBLISH on the connection it
came on. A mid is only meaningful within one connection (after a reconnect without a session
the broker reuses mids for other messages), so acks for an older connection are dropped there,
where connections change; the broker redelivers those messages and the unique event_id absorbs
the copy. MQTT also wants QoS 1 PUBACKs in arrival order: the writer is FIFO and acks whole
batches in order.

Nothing is acknowledged before its rows are committed, so a consumer killed at any moment loses
nothing: the broker keeps unacknowledged messages in the consumer's persistent session (stable
client id, session expiry) and sends them again when it reconnects.
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.settings import LinkSettings, full_jitter, make_client

log = logging.getLogger(__name__)

DEFAULT_FILTERS = ("shelfgate/v1/+/+/events", "shelfgate/v1/+/+/status")


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection of ours it came on (acks only go back on that one)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    link: LinkSettings
    db_url: str
    group: str = "shelfgate"
    filters: tuple[str, ...] = DEFAULT_FILTERS
    receive_maximum: int = 100  # unacknowledged messages the broker may send us
    max_batch_messages: int = 200  # group commit: up to this many messages per transaction ...
    max_batch_wait_s: float = 0.05  # ... or what arrived within this after the first


def default_client_id(group: str) -> str:
    """Stable across restarts (the broker keeps the unacknowledged messages in this session);
    several consumers on one host need --client-id each."""
    return f"shelfgate-consume-{group}-{socket.gethostname()}"


def shared_filters(group: str, filters: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f if f.startswith("$share/") else f"$share/{group}/{f}" for f in filters)


class MqttIntake:
    """The paho client on its own thread: connects with jittered backoff, subscribes on every
    connect (a broker that lost its state has no subscription for us), queues messages and
    sends acks handed back by the writer."""

    def __init__(self, s: ConsumerSettings, work: queue.Queue[Incoming]) -> None:
        self.s = s
        self.work = work
        self.connection = 0  # bumped on every successful CONNACK
        self.failed = False
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._acks: collections.deque[tuple[int, int, int]] = collections.deque()
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread: threading.Thread | None = None
        self.client = make_client(s.link)
        self.client.manual_ack_set(True)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def ack(self, connection: int, acks: list[tuple[int, int]]) -> None:
        """From the writer thread: (mid, qos) pairs committed, in arrival order."""
        self._acks.extend((connection, mid, qos) for mid, qos in acks)

    # ------------------------------------------------------------- MQTT thread
    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("the MQTT thread failed: stopping")
            self.failed = True

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self.s.link.session_expiry_s
                props.ReceiveMaximum = self.s.receive_maximum
                self.client.connect(
                    self.s.link.host,
                    self.s.link.port,
                    self.s.link.keepalive_s,
                    clean_start=False,
                    properties=props,
                )
                while not self._stop.is_set():
                    if self.client.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                        break
                    self._send_acks()
                    if self.connected.is_set():
                        attempt = 0
            except (OSError, ValueError) as e:
                log.warning(
                    "MQTT connect to %s:%d failed: %s", self.s.link.host, self.s.link.port, e
                )
            self._lost()
            if self._stop.is_set():
                break
            attempt += 1
            delay = full_jitter(
                attempt, self.s.link.backoff_base_s, self.s.link.backoff_cap_s, self._rng
            )
            self._stop.wait(delay)
        self._acks.clear()
        try:
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        except Exception:
            log.debug("disconnect at stop failed", exc_info=True)

    def _lost(self) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            log.warning("MQTT connection lost: unacknowledged messages come again on reconnect")
        self.connected.clear()
        self.subscribed.clear()

    def _send_acks(self) -> None:
        while self._acks:
            connection, mid, qos = self._acks.popleft()
            if connection == self.connection and self.connected.is_set():
                self.client.ack(mid, qos)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                log.error("MQTT broker refused the consumer: %s", rc)
                return
            self.connection += 1
            self._acks.clear()  # acks for the previous connection would hit reused mids
            self.connected.set()
            log.info(
                "MQTT connected (session present: %s); subscribing %s",
                bool(getattr(flags, "session_present", False)),
                ", ".join(shared_filters(self.s.group, self.s.filters)),
            )
            client.subscribe([(f, 1) for f in shared_filters(self.s.group, self.s.filters)])
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        try:
            bad = [str(rc) for rc in rcs if rc.is_failure]
            if bad:
                log.error("the broker refused the subscription: %s", ", ".join(bad))
            else:
                self.subscribed.set()
                log.info(
                    "subscribed to %s", ", ".join(shared_filters(self.s.group, self.s.filters))
                )
        except Exception:
            log.exception("on_subscribe failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.work.put_nowait(
                Incoming(msg.topic, bytes(msg.payload), int(msg.mid), int(msg.qos), self.connection)
            )
        except Exception:
            log.exception("on_message failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            self._lost()
        except Exception:
            log.exception("on_disconnect failed")


def take_batch(work: queue.Queue[Incoming], s: ConsumerSettings, wait_s: float) -> list[Incoming]:
    """The first message (waiting up to wait_s), then whatever else arrives shortly after."""
    try:
        first = work.get(timeout=wait_s)
    except queue.Empty:
        return []
    batch = [first]
    deadline = time.monotonic() + s.max_batch_wait_s
    while len(batch) < s.max_batch_messages:
        left = deadline - time.monotonic()
        try:
            batch.append(work.get(timeout=left) if left > 0 else work.get_nowait())
        except queue.Empty:
            break
    return batch


def run_consumer(s: ConsumerSettings, stop: threading.Event, stats_every_s: float = 30.0) -> int:
    """Until `stop` is set: intake on the MQTT thread, writes on this one's helper thread."""
    from .writer import DbWriter

    work: queue.Queue[Incoming] = queue.Queue()
    intake = MqttIntake(s, work)
    writer = DbWriter(s.db_url, lambda wait: take_batch(work, s, wait), intake.ack, stop)
    writer.connect()  # a wrong --db fails here, before anything is subscribed
    intake.start()
    t = threading.Thread(target=writer.run, name="writer", daemon=True)
    t.start()
    last = time.monotonic()
    while not stop.wait(0.5):
        if intake.failed:
            stop.set()
            break
        if time.monotonic() - last >= stats_every_s:
            last = time.monotonic()
            _log_stats(writer.stats, work.qsize())
    t.join(30.0)  # the batch being written is committed and acked ...
    time.sleep(0.1)  # ... and its PUBACKs leave with the MQTT thread's next loop
    intake.stop()
    writer.close()
    _log_stats(writer.stats, work.qsize())
    return 1 if writer.failed or intake.failed else 0


def _log_stats(st: Any, queued: int) -> None:
    log.info(
        "%d messages: %d events stored, %d duplicates, %d dead letters (%d batches, %d queued)",
        st.messages,
        st.inserted,
        st.duplicates,
        st.dead_letters,
        st.batches,
        queued,
    )
