"""R8 in the link itself, not only in the pure function: what a broker sees of one gateway that
cannot get a session is connection attempts spaced by full-jitter exponential delays drawn from
the link's own random source (base doubling per failed attempt, capped), never a fixed rhythm."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import threading
import time

from gateway.mqtt.link import LinkEvent, MqttLink
from gateway.mqtt.settings import LinkSettings, full_jitter

BASE, CAP, SEED, ATTEMPTS = 0.04, 0.64, 7, 16


def test_link_reconnects_with_the_full_jitter_schedule() -> None:
    """A "broker" that accepts and hangs up at once: the gaps between its accepts are the
    link's backoff delays (plus the moment to notice the hang-up)."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    accepts: list[float] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepts.append(time.monotonic())
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    s = LinkSettings(
        host="127.0.0.1",
        port=port,
        tls=False,
        client_id="backoff-test",
        connect_delay_max_s=0.0,
        backoff_base_s=BASE,
        backoff_cap_s=CAP,
    )
    events: list[LinkEvent] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        link = MqttLink(s, loop, events.append, rng=random.Random(SEED))
        link.start()
        deadline = time.monotonic() + 60
        while len(accepts) < ATTEMPTS + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await loop.run_in_executor(None, link.stop)

    asyncio.run(main())
    srv.close()
    assert len(accepts) >= ATTEMPTS + 1, f"only {len(accepts)} connection attempts"
    rng = random.Random(SEED)
    rng.uniform(0.0, 0.0)  # the start-up delay's draw
    expected = [full_jitter(k, BASE, CAP, rng) for k in range(1, ATTEMPTS + 1)]
    gaps = [b - a for a, b in itertools.pairwise(accepts[: ATTEMPTS + 1])]
    for k, (gap, want) in enumerate(zip(gaps, expected, strict=True), start=1):
        # never sooner than the drawn delay; later only by the time to notice the hang-up
        assert want - 0.02 <= gap <= want + 0.25, (k, gap, want, gaps)
    assert max(expected) > 4 * BASE  # the schedule did grow past the base (attempts count)
