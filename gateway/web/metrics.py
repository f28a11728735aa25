"""`GET /metrics`: Prometheus text exposition, read from the live state at scrape time (a custom
collector: nothing is updated on the hot path). The names DESIGN.md fixes are kept exactly."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .state import LiveState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DROP_REASONS = ("dwell", "dwell_threshold", "offer_triggered")  # the event types the quota drops


class GatewayCollector(Collector):
    def __init__(self, state: LiveState, inflight: Callable[[], int], clients: Callable[[], int]):
        self._state = state
        self._inflight = inflight
        self._clients = clients

    def collect(self) -> Iterator[Metric]:
        s = self._state
        ids = s.layout.receiver_ids
        adverts = CounterMetricFamily(
            "shelfgate_adverts", "advertisements heard per receiver", labels=["receiver"]
        )
        last = GaugeMetricFamily(
            "shelfgate_receiver_last_heard_seconds",
            "seconds since the receiver was last heard (never: since the daemon started)",
            labels=["receiver"],
        )
        rate = GaugeMetricFamily(
            "shelfgate_receiver_adverts_per_second",
            "advertisements per second over the last 10 s",
            labels=["receiver"],
        )
        now = s.pipeline.now()
        for i, rx in enumerate(ids):
            adverts.add_metric([rx], float(s.recorder.adverts[i]))
            heard = float(s.recorder.last_heard[i])
            last.add_metric([rx], max(0.0, now - (heard if math.isfinite(heard) else s.started)))
            rate.add_metric([rx], float(s.adverts_per_s[i]))
        yield from (adverts, last, rate)
        used = CounterMetricFamily(
            "shelfgate_receiver_messages",
            "networked receivers: messages used",
            labels=["receiver"],
        )
        dropped = CounterMetricFamily(
            "shelfgate_receiver_dropped",
            "networked receivers: messages dropped, by reason (malformed, oversized, "
            "rate_limited, duplicate, late, future, overflow)",
            labels=["receiver", "reason"],
        )
        for rx, c in sorted(s.network_counters().items()):
            used.add_metric([rx], float(c["accepted"]))
            for reason, n in c["dropped"].items():
                dropped.add_metric([rx, reason], float(n))
        yield from (used, dropped)
        drift = s.pipeline.tracker.drift
        if drift is not None:
            shift = GaugeMetricFamily(
                "shelfgate_receiver_drift_db",
                "how much louder (+) or quieter (-) the reference beacons are at the receiver than "
                "at calibration (corrected when at least 1 dB)",
                labels=["receiver"],
            )
            for d in drift.report():
                if d.shift_db is not None:
                    shift.add_metric([d.receiver], d.shift_db)
            yield shift
        yield GaugeMetricFamily(
            "shelfgate_tags_tracked", "tags the tracker holds", value=s.pipeline.tracker.active_tags
        )
        events = CounterMetricFamily(
            "shelfgate_events", "events the pipeline made, by type", labels=["type"]
        )
        for kind in sorted({"dwell", "dwell_threshold", "offer_triggered", *s.events}):
            events.add_metric([kind], float(s.events[kind]))
        yield events
        ob = s.outbox
        yield GaugeMetricFamily(
            "shelfgate_outbox_backlog_events", "events not yet acknowledged by the broker",
            value=ob.get("backlog", 0),
        )  # fmt: skip
        oldest = ob.get("oldest_age_s")
        yield GaugeMetricFamily(
            "shelfgate_outbox_oldest_unsent_seconds", "age of the oldest unsent event (0: none)",
            value=oldest or 0.0,
        )  # fmt: skip
        drops = CounterMetricFamily(
            "shelfgate_dropped_events", "events dropped by the overflow policy", labels=["reason"]
        )
        dropped = ob.get("drops", {})
        for reason in sorted({*DROP_REASONS, *dropped}):  # zeros too: the label is there at once
            drops.add_metric([reason], float(dropped.get(reason, 0)))
        yield drops
        yield GaugeMetricFamily(
            "shelfgate_dead_letter_events", "events the broker refused too often",
            value=ob.get("dead_letter", 0),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "shelfgate_mqtt_connected", "1 while connected to the broker",
            value=1.0 if s.mqtt_connected() else 0.0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "shelfgate_mqtt_inflight_messages", "messages awaiting PUBACK", value=self._inflight()
        )
        yield GaugeMetricFamily(
            "shelfgate_web_stream_clients", "browsers on the live stream", value=self._clients()
        )


def make_registry(collector: GatewayCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessCollector(registry=reg)  # process_resident_memory_bytes, process_cpu_seconds_total
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
