"""Networked receivers as sources: ESP32 / Pi nodes that publish what they hear over MQTT.

    [[sources]]
    uri = "theengs:mqtt://127.0.0.1:1883"     # Theengs Gateway / OpenMQTTGateway JSON
    topic = "home/+/BTtoMQTT/#"               # the level matched by + is the receiver id

    [[sources]]
    uri = "espresense:mqtt://127.0.0.1:1883"  # ESPresense: espresense/devices/<id>/<room>
    topic = "espresense/devices/#"            # the last level (room) is the receiver id

`mqtts://` and credentials as in `[mqtt]` (`username`, `password_file`, `ca_file`, ...).
URI parameters: `rx=<id>` (every message is that receiver's: a topic filter without `+`),
`rate=` messages/s per receiver (1000) with `burst=` (2000), `max_bytes=` per message (4096),
`dedupe_ms=` (50), `max_late_s=` (2), `clock=` (arrival | receiver), `speed=` and `epoch=`
(the store's time runs N x faster than the wall clock from `epoch` on: the gateway's whole
input clock does, drivers/network/timebase.py; for replaying a recorded store over a broker).

Time (`clock=arrival`, the default): these nodes send no timestamp one could trust
(OpenMQTTGateway's `time` is seconds since its boot; Theengs and ESPresense send none), so an
advertisement is stamped with the monotonic clock when its message arrives, on the network
thread. A batch the event loop takes more than `max_late_s` after arrival (the loop was stalled)
is dropped and counted as late: the pipeline has moved on. `clock=receiver`: the node's clock is
known good and each message says when it heard it (`ts`, unix seconds); readings are held
`max_late_s` and fed in time order (`_ordered`), and the intake ticks no further than what was
fed (`watermark`). Every drop is counted per receiver (`counters()`) and summarised in the log.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

from drivers.advertisement import Advertisement
from drivers.source import PlainSpec, SourceContext, SourceSpec, SourceUri
from gateway.clock import Clock
from gateway.mqtt.settings import LinkSettings, parse_broker
from positioning.errors import InputError

from .guard import ReceiverGuard, ReceiverStats
from .health import ReceiverCounters
from .messages import Heard, Malformed, decode_espresense, decode_theengs
from .node import decode_batch
from .subscriber import Inbox, Subscriber

log = logging.getLogger(__name__)

INBOX_LIMIT = 50_000  # advertisements waiting for the loop (~10 s of a busy store)
ALIVE_S = 30.0  # while connected, an empty batch this often: the source is alive (watchdog)
REPORT_S = 60.0
OFFSET_S = 10.0  # receiver clocks: our wall - monotonic offset is read this often
COALESCE_S = 0.02  # advertisements are handed to the pipeline at most this often  # drop counters are summarised in the log at most this often


class NetworkSource:
    live = True
    feeds: str | None = None  # many receivers, named by the topic
    default_topic = ""
    limits = (4096, 1000.0, 2000.0)  # default max_bytes=, rate=, burst= of one topic level

    def __init__(self, uri: SourceUri, ctx: SourceContext) -> None:
        self.uri = uri
        self.name = uri.text
        spec = uri.spec or PlainSpec(uri.text)
        self.topic = spec.topic or self.default_topic
        self.settings = _link_settings(uri, spec)
        self.speed = uri.number("speed", 1.0)  # the input clock runs this fast (timebase.py)
        self.max_late_s = uri.number("max_late_s", 2.0)
        if self.speed <= 0 or self.max_late_s <= 0:
            raise InputError(uri.text, "speed", "expected positive speed= and max_late_s=")
        clock = uri.param("clock", "arrival")
        if clock not in ("arrival", "receiver"):
            raise InputError(uri.text, "clock", f"expected arrival or receiver, got {clock!r}")
        # receiver: the nodes' clocks are known good (NTP); their timestamps are used, and
        # readings are held max_late_s (input seconds) to be fed in time order
        self.receiver_clock = clock == "receiver"
        self.ordered = self.receiver_clock  # readings held max_late_s and fed in time order
        self.lag_s = self.max_late_s if self.ordered else 0.0
        self._wall = ctx.wall if ctx.wall is not None else _wall_on(ctx.mono)
        self.fixed_rx = ctx.receiver(uri) if "rx" in uri.params else None
        self._levels = self.topic.split("/")
        self._rx_level = self._receiver_level()
        self.guard = ReceiverGuard(
            uri.text,
            ctx.receivers,
            max_bytes=uri.integer("max_bytes", self.limits[0]),
            rate=uri.number("rate", self.limits[1]),
            burst=uri.number("burst", self.limits[2]),
            dedupe_s=uri.number("dedupe_ms", 50.0) / 1000.0,
        )
        self._mono = ctx.mono
        self._inbox = Inbox(INBOX_LIMIT)
        self._held: list[Advertisement] = []  # receiver clocks: in time order, not yet fed
        self._released = float("-inf")  # receiver clocks: fed up to here; older is late
        self._off, self._offset_until = 0.0, float("-inf")
        self.connected = False
        self.ignored = 0  # messages on topics of another shape (e.g. ESPresense sub-reports)

    def _receiver_level(self) -> int | None:
        if self.fixed_rx is not None:
            return None
        if "+" not in self._levels:
            raise InputError(
                self.uri.text,
                "topic",
                f"{self.topic!r}: expected a + level for the receiver id (or rx=<id>)",
            )
        return self._levels.index("+")

    def receiver_of(self, topic: str) -> str | None:
        if self.fixed_rx is not None:
            return self.fixed_rx
        parts = topic.split("/")
        assert self._rx_level is not None
        return parts[self._rx_level] if len(parts) > self._rx_level else None

    def stats(self) -> dict[str, ReceiverStats]:
        return self.guard.stats

    def _offset(self, now: float) -> float:
        """Our wall - monotonic offset, read every OFFSET_S (NTP slews it slowly): one value for
        many messages, so the nodes' simultaneous timestamps stay equal on our clock."""
        if now >= self._offset_until:
            self._offset_until = now + OFFSET_S
            self._off = self._wall() - self._mono()
        return self._off

    def watermark(self) -> float:
        """Input time up to which this source has handed on everything it will (the pipeline
        may tick up to here): now, or for held readings, the last lateness mark fed."""
        now = self._mono()
        if not self.ordered:
            return now
        if not self._held and not self._inbox.pending():  # nothing waits: older is late now
            self._released = max(self._released, now - self.lag_s)
        return self._released

    def counters(self) -> list[ReceiverCounters]:
        """Each receiver's counters now (a snapshot; the network thread keeps counting)."""
        return [ReceiverCounters.of(rx, self.name, st) for rx, st in list(self.guard.stats.items())]

    def exclude(self, fed: dict[str, str]) -> None:
        """Receivers that local radios feed (see `ReceiverGuard.exclude`)."""
        self.guard.exclude(fed)

    def decode(self, obj: Any) -> Heard:
        raise NotImplementedError

    # -------------------------------------------------------------- network thread
    def _on_message(self, topic: str, payload: bytes, dup: bool) -> None:
        now = self._mono()
        rx = self.receiver_of(topic)
        if rx is None:
            self.ignored += 1
            return
        st = self.guard.admit(rx, payload, now, dup)
        if st is None:
            return
        try:
            heard = self.decode(orjson.loads(payload))
        except (orjson.JSONDecodeError, Malformed, RecursionError) as e:
            self.guard.malformed(rx, st, str(e)[:120])
            return
        t = now
        if self.receiver_clock:
            if heard.t is None:
                self.guard.malformed(rx, st, "no ts (clock=receiver expects the node's time)")
                return
            t = heard.t - self._offset(now)  # the node's wall time on our monotonic clock
        adv = Advertisement(rx, heard.address, heard.rssi, heard.mfg, heard.svc, t, name=heard.name)
        if self._inbox.put(adv):
            st.accepted += 1
            st.last_heard = now
        else:
            st.overflow += 1

    def _on_state(self, connected: bool) -> None:
        self.connected = connected

    # -------------------------------------------------------------- event loop
    async def batches(self) -> AsyncIterator[list[Advertisement]]:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        self._inbox.bind(loop, ready.set)
        sub = Subscriber(self.settings, self.topic, self._on_message, self._on_state, self.name)
        sub.start()
        next_report = self._mono() + REPORT_S
        reported = 0
        try:
            while True:
                wait = ALIVE_S
                if self._held:  # the oldest held reading is due when the lateness bound passes
                    due = self._held[0].t + self.max_late_s - self._mono()
                    wait = max(COALESCE_S, due / self.speed)
                try:
                    async with asyncio.timeout(wait):
                        await ready.wait()
                except TimeoutError:
                    if not self._held:
                        if self.connected:
                            yield []  # connected, the receivers quiet: alive
                        continue
                else:
                    await asyncio.sleep(COALESCE_S)  # let a batch gather: one pipeline step
                ready.clear()  # per batch costs a few array operations, whatever its size
                items = self._inbox.take()
                batch = self._ordered(items) if self.ordered else self._fresh(items)
                now = self._mono()
                if now >= next_report:
                    next_report = now + REPORT_S
                    reported = self._report(reported)
                if batch:
                    yield batch
        finally:
            await loop.run_in_executor(None, sub.stop)

    def _fresh(self, items: list[Advertisement]) -> list[Advertisement]:
        """The batch without what waited too long for the loop (counted late per receiver)."""
        if not items:
            return items
        oldest = self._mono() - self.max_late_s
        if items[0].t >= oldest:
            return items
        fresh = [a for a in items if a.t >= oldest]
        stats = self.guard.stats
        for a in items:
            if a.t < oldest:
                stats[a.receiver].late += 1
        return fresh

    def _ordered(self, items: list[Advertisement]) -> list[Advertisement]:
        """Receiver clocks: `items` join the held readings in time order; what is older than
        the lateness bound (now - max_late_s) is fed. A reading older than what was fed already
        is late, one from further ahead than the bound is from a clock that is wrong: both are
        dropped and counted (a Kalman filter cannot take time going backwards)."""
        now = self._mono()
        held, stats = self._held, self.guard.stats
        if items:
            floor, ceiling = self._released, now + self.max_late_s
            new = [a for a in items if floor <= a.t <= ceiling]
            if len(new) < len(items):
                for a in items:
                    if a.t < floor:
                        stats[a.receiver].late += 1
                    elif a.t > ceiling:
                        stats[a.receiver].future += 1
            new.sort(key=_T)
            if held and new and new[0].t < held[-1].t:  # overlaps the held tail: merge that
                i = bisect.bisect_right(held, new[0].t, key=_T)
                tail = held[i:]
                del held[i:]
                held.extend(heapq.merge(tail, new, key=_T))
            else:
                held.extend(new)
        mark = now - self.max_late_s
        if mark > self._released:
            self._released = mark
        k = bisect.bisect_right(held, mark, key=_T)
        out = held[:k]
        del held[:k]
        return out

    def _report(self, reported: int) -> int:
        dropped = {rx: st.dropped() for rx, st in self.guard.stats.items() if st.dropped()}
        total = sum(dropped.values())
        if total > reported:
            worst = sorted(dropped.items(), key=lambda kv: -kv[1])[:5]
            log.warning(
                "%s: %d messages dropped so far (most: %s)",
                self.name,
                total,
                ", ".join(f"{rx} {n}" for rx, n in worst),
            )
        return total


class TheengsSource(NetworkSource):
    default_topic = "home/+/BTtoMQTT/#"

    def decode(self, obj: Any) -> Heard:
        return decode_theengs(obj)


class EspresenseSource(NetworkSource):
    default_topic = "espresense/devices/#"

    def decode(self, obj: Any) -> Heard:
        return decode_espresense(obj)

    def _receiver_level(self) -> int | None:
        if self.fixed_rx is not None:
            return None
        if self._levels[-1] not in ("#", "+") and "+" not in self._levels:
            raise InputError(
                self.uri.text,
                "topic",
                f"{self.topic!r}: expected a filter, e.g. espresense/devices/#",
            )
        prefix = next(i for i, lv in enumerate(self._levels) if lv in ("+", "#"))
        return prefix + 1  # <prefix>/<device id>/<room>: the room is the receiver

    def receiver_of(self, topic: str) -> str | None:
        if self.fixed_rx is not None:
            return self.fixed_rx
        parts = topic.split("/")
        assert self._rx_level is not None
        if len(parts) != self._rx_level + 1:  # a sub-report (.../<room>/<report>) or other
            return None
        return parts[-1]


_T = attrgetter("t")


def _wall_on(mono: Callable[[], float]) -> Callable[[], float]:
    """Wall time on `mono`'s scale (a context without a wall clock: the real one)."""
    real = Clock()
    return lambda: mono() + (real.wall() - real.mono())


class NodeSource(NetworkSource):
    """`shelfgate:mqtt://...`: batches from shelfgate nodes (`shelfgate run --role node`, the
    format in drivers/network/node.py). The topic level matched by the last + is the node; the
    receiver ids come in the batch (each must be a receiver of the layout). Per node: size,
    rate, duplicate and malformed batches, and batches lost (gaps in its seq), as
    `node:<id>`; per receiver: its advertisements. Readings are always held `max_late_s` and
    fed in time order (batches from several nodes arrive interleaved by up to a batch's age)."""

    default_topic = "shelfgate/v1/+/nodes/+/adv"
    limits = (1 << 20, 50.0, 100.0)
    MAX_NODES = 64

    def __init__(self, uri: SourceUri, ctx: SourceContext) -> None:
        super().__init__(uri, ctx)
        self.ordered = True
        self.lag_s = self.max_late_s
        g = self.guard
        self.nodes = ReceiverGuard(uri.text, (), g.max_bytes, g.rate, g.burst, 0.0)
        self._seqs: dict[str, tuple[str, int]] = {}

    def _receiver_level(self) -> int | None:
        if self.fixed_rx is not None:
            raise InputError(self.uri.text, "rx", "a node's batch names its receivers: no rx=")
        if "+" not in self._levels:
            raise InputError(
                self.uri.text, "topic", f"{self.topic!r}: expected a + level for the node id"
            )
        return len(self._levels) - 1 - self._levels[::-1].index("+")

    def counters(self) -> list[ReceiverCounters]:
        return super().counters() + [
            ReceiverCounters.of(f"node:{n}", self.name, st)
            for n, st in list(self.nodes.stats.items())
        ]

    def _on_message(self, topic: str, payload: bytes, dup: bool) -> None:
        now = self._mono()
        node = self.receiver_of(topic)
        if node is None:
            self.ignored += 1
            return
        nodes = self.nodes.stats
        if node not in nodes and len(nodes) < self.MAX_NODES:
            nodes[node] = ReceiverStats()
        nst = self.nodes.admit(node, payload, now, dup)
        if nst is None:
            return
        try:
            b = decode_batch(orjson.loads(payload))
        except (orjson.JSONDecodeError, Malformed, RecursionError) as e:
            self.nodes.malformed(node, nst, str(e)[:120])
            return
        prev = self._seqs.get(node)
        if prev is not None and prev[0] == b.boot:
            if b.seq <= prev[1]:
                nst.duplicate += 1
                return
            nst.lost += b.seq - prev[1] - 1
        self._seqs[node] = (b.boot, b.seq)
        nst.accepted += 1
        nst.last_heard = now
        base = now  # arrival: each advertisement's age on the node's own monotonic clock
        if self.receiver_clock and b.sent.synced:
            base = b.sent.wall - self._offset(now)
        usable, put = self.guard.usable, self._inbox.put
        for age, rx, addr, rssi, (mfg, svc) in b.rows:
            st = usable(rx)
            if st is None:
                continue
            if put(Advertisement(rx, addr, rssi, mfg, svc, base - age)):
                st.accepted += 1
                st.last_heard = now
            else:
                st.overflow += 1


def _link_settings(uri: SourceUri, spec: SourceSpec) -> LinkSettings:
    host, port, tls = parse_broker(uri.path, spec.allow_plaintext, uri.text)
    password = spec.password
    if spec.password_file is not None:
        try:
            password = Path(spec.password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise InputError(uri.text, "password_file", f"cannot read it ({e})") from None
    return LinkSettings(
        host=host,
        port=port,
        tls=tls,
        client_id=spec.client_id or f"shelfgate-{uri.kind}-{secrets.token_hex(4)}",
        protocol="3.1.1",  # what every hobbyist broker speaks; a clean session, QoS 0
        username=spec.username,
        password=password,
        ca_file=spec.ca_file,
        cert_file=spec.cert_file,
        key_file=spec.key_file,
        connect_delay_max_s=0.0,
    )
