"""Trigger decision cost: 5,000 offers over 200 zones, 1,000 tags staying in zones.

    python -m benchmarks.offers

Each simulated second every tag's stay is followed (sync_stays) and the matcher ticks, as the
daemon does once a second; stays last 30 s to 10 min and then move to another zone.
"""

from __future__ import annotations

import random
import time

from positioning.offers import OfferMatcher, parse_catalogue


def main() -> None:
    rng = random.Random(1)
    zones = [f"zone-{i:03d}" for i in range(200)]
    offers = []
    for i in range(5000):
        o: dict[str, object] = {
            "id": f"offer-{i}",
            "zones": rng.sample(zones, rng.randint(1, 3)),
            "min_dwell_s": rng.choice([30, 60, 90, 120, 180, 300]),
            "priority": rng.randint(0, 9),
            "max_per_tag": rng.randint(1, 3),
        }
        if i % 3 == 0:
            o["windows"] = [
                {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "from": "08:00", "to": "20:00"}
            ]
        if i % 5 == 0:
            o["audience"] = ["ibeacon:f7826da6"]
        offers.append(o)
    t0 = time.perf_counter()
    cat = parse_catalogue({"version": 1, "offers": offers})
    m = OfferMatcher(cat, "Europe/Berlin")
    build = time.perf_counter() - t0
    tags = [
        f"ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:{i}" if i % 2 else f"eddystone:ns:{i:012x}"
        for i in range(1000)
    ]
    start = 1795341600.0  # a Monday, 10:00 in Berlin
    stays = {
        t: (rng.choice(zones), start - rng.uniform(0, 300), rng.uniform(30, 600)) for t in tags
    }
    seconds = 900
    triggers = 0
    t0 = time.perf_counter()
    for s in range(seconds):
        now = start + s
        for t, (_z, st, length) in list(stays.items()):
            if now - st > length:
                stays[t] = (rng.choice(zones), now, rng.uniform(30, 600))
        m.sync_stays((t, z, st, False) for t, (z, st, _) in stays.items())
        triggers += len(m.tick(now))
    dt = time.perf_counter() - t0
    print(f"catalogue: 5,000 offers over 200 zones parsed and indexed in {build * 1000:.0f} ms")
    print(
        f"{seconds} s of 1,000 tags staying: {dt:.2f} s CPU = {dt / seconds * 1000:.2f} ms per second of store "
        f"time ({dt / seconds / 1000 * 1e6:.1f} us per tag per tick), {triggers} triggers"
    )


if __name__ == "__main__":
    main()
