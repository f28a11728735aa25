"""Fleet simulation: N lightweight asyncio MQTT gateways against a local mosquitto that is
restarted; the gateway's reconnect policy (random start delay, full-jitter backoff) against a
naive fixed delay. Loopback only, bounded in time.

    python -m benchmarks.fleet [--gateways 1000 5000] [--policies jitter naive] [--down-s 5]

Each simulated gateway is a ~100-line MQTT 3.1.1 client on asyncio streams (no paho: 5,000 paho
threads would measure Python, not the policy). It publishes a QoS 1 message with its own counter
every --publish-s seconds and resends unacknowledged ones after a reconnect (DUP), as the outbox
does; a paho subscriber with a persistent session counts what arrives. The broker persists its
state on the graceful stop, so nothing is lost by the broker itself.

Figures per run: peak connects per second (the most CONNACKs in any 1-s window, as the clients
saw them; on a loaded 2-core machine the clients' own event loop bunches them) and peak connection
attempts per second after the restart (what the policy decides), time from the broker's restart until every gateway is connected again, the most
connection attempts one gateway made in any 60 s (what a broker's flapping detection counts),
messages lost and duplicated at the subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import struct
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.mqtt.settings import full_jitter
from tests.mqtt_helpers import Broker

HOST = "127.0.0.1"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def connect_packet(cid: str, keepalive: int = 60) -> bytes:
    body = _s(b"MQTT") + bytes([4, 0x00]) + struct.pack("!H", keepalive) + _s(cid.encode())
    return b"\x10" + _varint(len(body)) + body  # clean session off: a persistent session


def publish_packet(topic: str, pid: int, payload: bytes, dup: bool) -> bytes:
    body = _s(topic.encode()) + struct.pack("!H", pid) + payload
    return bytes([0x32 | (0x08 if dup else 0)]) + _varint(len(body)) + body


async def read_packet(r: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await r.readexactly(1))[0]
    n, mult = 0, 1
    while True:
        b = (await r.readexactly(1))[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return head, await r.readexactly(n)


@dataclass
class Policy:
    name: str
    start_delay_max_s: float = 10.0

    def start_delay(self, rng: random.Random) -> float:
        return rng.uniform(0, self.start_delay_max_s) if self.name == "jitter" else 0.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        if self.name == "jitter":  # gateway.mqtt.settings: full jitter, base 1 s, cap 300 s
            return full_jitter(min(attempt, 20), 1.0, 300.0, rng)
        return 1.0  # naive: a fixed second, the same for every gateway


@dataclass
class Fleet:
    n: int
    policy: Policy
    port: int
    publish_s: float
    connacks: list[float] = field(default_factory=list)
    attempts: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    connected: set[int] = field(default_factory=set)
    sent: dict[int, int] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def gateway(self, i: int) -> None:
        rng = random.Random(i)
        await asyncio.sleep(self.policy.start_delay(rng))
        attempt, counter = 0, 0
        unacked: dict[int, bytes] = {}
        topic = f"fleet/gw{i:05d}"
        while not self.stop.is_set():
            self.attempts[i].append(time.monotonic())
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 10)
            except (OSError, TimeoutError):
                attempt += 1
                await asyncio.sleep(self.policy.delay(attempt, rng))
                continue
            try:
                w.write(connect_packet(f"sim-{i:05d}"))
                head, body = await asyncio.wait_for(read_packet(r), 10)
                if head != 0x20 or body[1] != 0:
                    raise ConnectionError("refused")
                self.connacks.append(time.monotonic())
                self.connected.add(i)
                attempt = 0
                for pid, payload in sorted(unacked.items()):
                    w.write(publish_packet(topic, pid, payload, dup=True))
                counter = await self._connected(r, w, topic, unacked, counter)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                self.connected.discard(i)
                w.close()
            self.sent[i] = counter
            if not self.stop.is_set():
                await asyncio.sleep(self.policy.delay(attempt, random.Random()))

    async def _connected(
        self,
        r: asyncio.StreamReader,
        w: asyncio.StreamWriter,
        topic: str,
        unacked: dict[int, bytes],
        counter: int,
    ) -> int:
        next_pub = time.monotonic() + random.uniform(0, self.publish_s)
        while not self.stop.is_set():
            timeout = max(0.0, next_pub - time.monotonic())
            try:
                head, body = await asyncio.wait_for(read_packet(r), timeout)
                if head >> 4 == 4:  # PUBACK
                    unacked.pop(struct.unpack("!H", body[:2])[0], None)
                continue
            except TimeoutError:
                pass
            counter += 1
            pid = counter % 65535 + 1
            payload = str(counter).encode()
            unacked[pid] = payload
            w.write(publish_packet(topic, pid, payload, dup=False))
            await w.drain()
            next_pub = time.monotonic() + self.publish_s
        return counter


class Subscriber:
    """paho, persistent session: counts (gateway, counter) pairs."""

    def __init__(self, port: int) -> None:
        self.seen: Counter[tuple[str, bytes]] = Counter()
        self.lock = threading.Lock()
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-sub", clean_session=False
        )
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("fleet/#", qos=1)
        self.c.on_message = self._msg
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect(HOST, port, 30)
        self.c.loop_start()

    def _msg(self, c: object, u: object, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen[(m.topic, bytes(m.payload))] += 1

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def peak_rate(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for k, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, k - j + 1)
    return best


async def run(
    n: int, policy: Policy, down_s: float, publish_s: float, limit_s: float
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        conf = (
            "max_connections -1\nmax_queued_messages 100000\nautosave_interval 3600\nlog_type none"
        )
        broker = Broker(Path(tmp), extra=conf, persistence=True).start()
        sub = Subscriber(broker.port)
        fleet = Fleet(n, policy, broker.port, publish_s)
        tasks = [asyncio.create_task(fleet.gateway(i)) for i in range(n)]
        t_start = time.monotonic()
        while len(fleet.connected) < n and time.monotonic() - t_start < limit_s:
            await asyncio.sleep(0.1)
        first_all = time.monotonic() - t_start
        await asyncio.sleep(2.0)
        broker.stop()
        t_down = time.monotonic()
        await asyncio.sleep(down_s)
        broker.start()
        t_up = time.monotonic()
        while len(fleet.connected) < n and time.monotonic() - t_up < limit_s:
            await asyncio.sleep(0.05)
        recovered = time.monotonic() - t_up
        await asyncio.sleep(publish_s + 2.0)  # unacknowledged messages resent and delivered
        fleet.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(1.0)
        sub.close()
        broker.stop()
    after = [t for t in fleet.connacks if t >= t_up]
    tried = [t for ts in fleet.attempts.values() for t in ts if t >= t_up]
    per_min = max(
        (peak_rate([t for t in ts if t >= t_down], 60.0) for ts in fleet.attempts.values()),
        default=0,
    )
    with sub.lock:
        seen = dict(sub.seen)
    expected = {
        (f"fleet/gw{i:05d}", str(k).encode())
        for i, c in fleet.sent.items()
        for k in range(1, c + 1)
    }
    lost = len(expected - set(seen))
    dups = sum(v - 1 for v in seen.values() if v > 1)
    return {
        "first_connect_all_s": first_all,
        "peak_connects_per_s": peak_rate(after),
        "peak_attempts_per_s": peak_rate(tried),
        "recovery_s": recovered
        if len(fleet.connected) >= n or recovered < limit_s
        else float("nan"),
        "all_back": float(len(after) >= n),
        "max_attempts_per_min": per_min,
        "messages": len(expected),
        "lost": lost,
        "duplicates": dups,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gateways", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument(
        "--policies", nargs="+", default=["jitter", "naive"], choices=["jitter", "naive"]
    )
    ap.add_argument("--down-s", type=float, default=5.0, help="broker down this long (5)")
    ap.add_argument(
        "--publish-s", type=float, default=10.0, help="each gateway publishes this often"
    )
    ap.add_argument("--limit-s", type=float, default=120.0, help="give up waiting after this")
    a = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # mosquitto inherits it
    if hard < 2 * max(a.gateways) + 200:
        raise SystemExit(f"need {2 * max(a.gateways) + 200} file descriptors, have {hard}")
    print(f"broker down {a.down_s:g} s; publish every {a.publish_s:g} s per gateway")
    for n in a.gateways:
        for name in a.policies:
            f = asyncio.run(run(n, Policy(name), a.down_s, a.publish_s, a.limit_s))
            print(
                f"{n:>5} gateways, {name:>6}: peak {f['peak_connects_per_s']:>5.0f} connects/s "
                f"({f['peak_attempts_per_s']:.0f} attempts/s), "
                f"all reconnected {f['recovery_s']:5.1f} s after the restart "
                f"(first start {f['first_connect_all_s']:.1f} s), "
                f"max {f['max_attempts_per_min']:.0f} attempts/min by one gateway, "
                f"{f['messages']:.0f} messages: {f['lost']:.0f} lost, {f['duplicates']:.0f} duplicated",
                flush=True,
            )


if __name__ == "__main__":
    main()
