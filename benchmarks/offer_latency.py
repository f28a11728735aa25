"""Offer latency: from the pipeline's decision (an `offer_triggered` event leaves the pipeline)
to the broker's PUBACK for the message carrying it, on a local mosquitto.

    python -m benchmarks.offer_latency [--duration 120] [--shoppers 60] [--offers 58]
                                       [--group-commit]

The real daemon (gateway.app.Gateway) runs in this process on a simulated store in real time
with a catalogue of `--offers` offers over the layout's zones; the outbox's append and the
publisher's settlement are observed (wrapped, unchanged) to time each offer event.
`--group-commit` treats offers like every other event (the previous behaviour: they wait for
the next group commit), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import events
from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.layoutfile import load_layout
from gateway.mqtt.link import Published, Unsent
from gateway.outbox import Outbox
from gateway.services.committer import Committer
from gateway.services.publisher import Publisher
from tests.mqtt_helpers import Broker

LAYOUT = "config/layout.toml"


def catalogue(zones: list[str], n: int, rng: random.Random) -> dict[str, Any]:
    offers = [
        {
            "id": f"offer-{i}",
            "zones": rng.sample(zones, rng.randint(1, 2)),
            "min_dwell_s": rng.choice([5, 10, 15, 20, 30, 45]),
            "priority": rng.randint(0, 9),
            "max_per_tag": 5,
        }
        for i in range(n)
    ]
    return {"version": 1, "offers": offers}


def instrument() -> tuple[dict[str, float], dict[int, str], dict[str, float]]:
    decided: dict[str, float] = {}  # event_id -> monotonic time the pipeline returned it
    seq_of: dict[int, str] = {}  # outbox seq -> event_id (offer events)
    acked: dict[str, float] = {}  # event_id -> monotonic time of the PUBACK
    add, append, settled = Committer.add, Outbox.append, Publisher.on_settled

    def add_(self: Committer, evs: list[events.WireEvent]) -> None:
        now = time.monotonic()
        for e in evs:
            if e.type == "offer_triggered":
                decided[e.event_id] = now
        add(self, evs)

    def append_(self: Outbox, bodies: Any, triggers: Any = ()) -> list[int]:
        bodies = list(bodies)
        seqs = append(self, bodies, triggers)
        offers = [b["event_id"] for b in bodies if b["type"] == "offer_triggered"]
        if offers and len(seqs) == len(bodies):
            for seq, b in zip(seqs, bodies, strict=True):
                if b["type"] == "offer_triggered":
                    seq_of[seq] = b["event_id"]
        return seqs

    def settled_(self: Publisher, ev: Published | Unsent) -> None:
        now = time.monotonic()
        if isinstance(ev, Published) and ev.ok:
            for seq in self.inflight.get(ev.ticket, []):
                if seq in seq_of:
                    acked[seq_of[seq]] = now
        settled(self, ev)

    Committer.add = add_  # type: ignore[method-assign]
    Outbox.append = append_  # type: ignore[method-assign]
    Publisher.on_settled = settled_  # type: ignore[method-assign]
    return decided, seq_of, acked


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--shoppers", type=int, default=60)
    ap.add_argument("--offers", type=int, default=58)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--group-commit", action="store_true")
    a = ap.parse_args()
    if a.group_commit:
        events.WireEvent.urgent = property(lambda self: False)  # type: ignore[method-assign,assignment]
    layout = load_layout(LAYOUT)
    cat = catalogue([z.id for z in layout.zones], a.offers, random.Random(a.seed))
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d)).start()
        pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(
            f"shelfgate/v1/{layout.store_id}/offers", json.dumps(cat), qos=1, retain=True
        ).wait_for_publish(5)
        pub.loop_stop()
        cfg = config_from_dict(
            {
                "gateway": {"data_dir": f"{d}/data"},
                "privacy": {"secret": "benchmark-secret-0123"},
                "mqtt": {"broker": broker.url, "connect_delay_max_s": 0.0},
            },
            "<benchmark>",
        )
        decided, _, acked = instrument()
        src = f"sim:{LAYOUT}?shoppers={a.shoppers}&devices=0&seed={a.seed}"

        async def run() -> None:
            asyncio.get_running_loop().call_later(a.duration, os.kill, os.getpid(), signal.SIGTERM)
            await Gateway(cfg, layout, None, (src,)).run()

        asyncio.run(run())
        broker.stop()
    lat = sorted((acked[e] - decided[e]) * 1000 for e in acked if e in decided)
    if not lat:
        print("no offer was triggered and acknowledged: run longer (--duration)")
        return
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    mode = (
        "group commit (offers wait)" if a.group_commit else "offers committed and published at once"
    )
    print(
        f"offer latency, decision -> PUBACK ({mode}): {len(lat)} offer events of {len(decided)} "
        f"decided in {a.duration:.0f} s: median {statistics.median(lat):.1f} ms, "
        f"p99 {p99:.1f} ms, max {lat[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
