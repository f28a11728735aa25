"""The gateway's live state for people: what `/api/v1/state` returns (DESIGN.md's shape),
what the floor map's stream pushes, and what `/metrics` exposes. One `LiveState.tick()` a
second samples the pipeline (zone probabilities into the history), receiver rates and the MQTT
state; the outbox's figures are refreshed every few seconds on the outbox thread."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.network.health import ReceiverCounters
from gateway.clock import Clock
from gateway.events import Identity, WireEvent
from gateway.pipeline import Pipeline
from gateway.services.receivers import ReceiverHealth
from gateway.services.store import OutboxWorker
from positioning.layout import Layout
from positioning.tracker import TagView

from .history import LiveRecorder, TagHistory, tag_keys

OUTBOX_EVERY_S = 2.0
HISTORY_S = 300.0  # tag detail: the last five minutes


class LiveState:
    def __init__(
        self,
        layout: Layout,
        pipeline: Pipeline,
        identity: Identity,
        store: OutboxWorker,
        connected: Callable[[], bool],
        clock: Clock,
        health: ReceiverHealth | None = None,
    ) -> None:
        self.layout = layout
        self.pipeline = pipeline
        self.identity = identity
        self._store = store
        self._connected = connected
        self._clock = clock
        self.health = health or ReceiverHealth(pipeline.tracker.rx_index, clock.mono())
        self.recorder = LiveRecorder(pipeline, health=self.health)
        pipeline.tap = self.recorder
        self.started = self.health.started
        self.events: Counter[str] = Counter()
        self.outbox: dict[str, Any] = {}
        self._outbox_at = -math.inf
        self._mqtt: tuple[bool, float] = (False, clock.wall())
        self.views: list[TagView] = []
        self._pseudonyms: dict[str, str] = {}  # tag -> pseudonym, tracked tags only
        self.by_pseudonym: dict[str, str] = {}
        # networked receivers' counters (drivers.network.health.receiver_counters)
        self.networked: Callable[[], list[ReceiverCounters]] = list

    def counting(
        self, sink: Callable[[list[WireEvent]], None]
    ) -> Callable[[list[WireEvent]], None]:
        """`sink`, counting the events that pass (shelfgate_events_total)."""

        def count(events: list[WireEvent]) -> None:
            for ev in events:
                self.events[ev.type] += 1
            sink(events)

        return count

    # ------------------------------------------------------------------ sampling
    async def tick(self) -> None:
        now = self._clock.mono()
        if now - self._outbox_at >= OUTBOX_EVERY_S:
            self._outbox_at = now
            self.outbox = await self._store.do(lambda o: o.stats())
        connected = self._connected()
        if connected != self._mqtt[0]:
            self._mqtt = (connected, self._clock.wall())
        self.health.sample(now)
        self._sample_tags()

    @property
    def adverts_per_s(self) -> npt.NDArray[np.float64]:
        return self.health.adverts_per_s

    def _sample_tags(self) -> None:
        self.views = self.pipeline.tag_views()
        known = self._pseudonyms
        fresh = {v.tag: known.get(v.tag) or self.identity.pseudonym(v.tag) for v in self.views}
        self._pseudonyms = fresh
        self.by_pseudonym = {p: t for t, p in fresh.items()}
        live = [v for v in self.views if not v.lost]
        if live:
            probs = np.stack([v.probs for v in live])
            self.recorder.sample_probs(tag_keys([v.tag for v in live]), self.pipeline.now(), probs)

    # ------------------------------------------------------------------ views
    def mqtt_connected(self) -> bool:
        return self._connected()

    def network_counters(self) -> dict[str, dict[str, Any]]:
        """Per networked receiver: messages used and dropped by reason (summed over sources)."""
        out: dict[str, dict[str, Any]] = {}
        for c in self.networked():
            got = out.setdefault(
                c.receiver, {"accepted": 0, "dropped": dict.fromkeys(c.dropped, 0)}
            )
            got["accepted"] += c.accepted
            for k, n in c.dropped.items():
                got["dropped"][k] = got["dropped"].get(k, 0) + n
        return out

    def receivers(self) -> list[dict[str, Any]]:
        now = self._clock.mono()
        index = self.pipeline.tracker.rx_index
        net = self.network_counters()
        mon = self.pipeline.tracker.drift
        drift = {d.receiver: d for d in mon.report()} if mon is not None else {}
        return [
            {
                "id": r.id,
                "x": r.x,
                "y": r.y,
                **self.health.entry(index[r.id], now),
                **({"network": net[r.id]} if r.id in net else {}),
                **(
                    {"drift_db": round(drift[r.id].applied_db, 1), "drift_alert": drift[r.id].alert}
                    if r.id in drift
                    else {}
                ),
            }
            for r in self.layout.receivers
        ]

    def tags(self) -> list[dict[str, Any]]:
        classes = self.pipeline.zone_classes
        index = {z: i for i, z in enumerate(classes)}
        off = self.pipeline.to_wall(0.0)  # once: the clock's offset (and sync state) is a syscall
        out = []
        for v in self.views:
            if v.lost:
                continue
            p = float(v.probs[index[v.zone]]) if v.zone in index else 1.0
            out.append(
                {
                    "tag": self._pseudonyms[v.tag],
                    "zone": v.zone,
                    "p": round(p, 3),
                    "since": round(v.since + off, 3),
                }
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        """`GET /api/v1/state` (DESIGN.md)."""
        ob = self.outbox
        return {
            "store": self.identity.store,
            "gateway": self.identity.gateway,
            "receivers": self.receivers(),
            "zones": [
                {"id": z.id, "name": z.name, "polygon": [list(p) for p in z.polygon]}
                for z in self.layout.zones
            ],
            "tags": self.tags(),
            "outbox": {"backlog": ob.get("backlog", 0), "oldest_s": ob.get("oldest_age_s")},
            "mqtt": {"connected": self._mqtt[0], "since": round(self._mqtt[1], 3)},
        }

    def nearest(self) -> dict[str, str]:
        """Per live tag (pseudonym), the receiver hearing it loudest (where the map draws a tag
        in no zone)."""
        ids = self.layout.receiver_ids
        out = {}
        for v in self.views:
            if not v.lost and not np.isnan(v.level).all():
                out[self._pseudonyms[v.tag]] = ids[int(np.nanargmax(v.level))]
        return out

    def tag_detail(self, pseudonym: str) -> dict[str, Any] | None:
        """One tag's last minutes: raw and filtered RSSI per receiver, zone probabilities."""
        tag = self.by_pseudonym.get(pseudonym)
        if tag is None:
            return None
        h: TagHistory = self.recorder.history(tag, self.pipeline.now() - HISTORY_S)
        off = self.pipeline.to_wall(0.0)
        ids = self.layout.receiver_ids
        rssi = {
            ids[i]: {
                "t": np.round(t + off, 2).tolist(),
                "raw": np.round(raw, 1).tolist(),
                "filtered": [None if math.isnan(x) else round(x, 2) for x in filt.tolist()],
            }
            for i, (t, raw, filt) in h.rssi.items()
        }
        return {
            "tag": pseudonym,
            "now": round(self._clock.wall(), 3),
            "zones": list(self.pipeline.zone_classes),
            "rssi": rssi,
            "probs": {
                "t": np.round(h.prob_t + off, 2).tolist(),
                "p": np.round(h.probs, 3).tolist(),
            },
        }
