"""The same health two ways, from one running daemon: `GET /metrics` parsed by prometheus_client's
own text parser (every name DESIGN.md relies on, with its type and labels), and the retained
status message (per receiver rate and last heard, backlog, oldest unsent, drops, MQTT state,
config), which a fleet dashboard reads without a second protocol."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .mqtt_helpers import free_port
from .remote_helpers import LAYOUT, running_daemon
from .test_daemon_delivery import validator
from .web_helpers import wait_for

# DESIGN.md "Technician web app and metrics": family name -> (type, labels)
RELIED_ON = {
    "shelfgate_adverts": ("counter", {"receiver"}),  # sample shelfgate_adverts_total
    "shelfgate_receiver_last_heard_seconds": ("gauge", {"receiver"}),
    "shelfgate_tags_tracked": ("gauge", set()),
    "shelfgate_events": ("counter", {"type"}),  # sample shelfgate_events_total
    "shelfgate_outbox_backlog_events": ("gauge", set()),
    "shelfgate_outbox_oldest_unsent_seconds": ("gauge", set()),
    "shelfgate_dropped_events": ("counter", {"reason"}),  # sample shelfgate_dropped_events_total
    "shelfgate_mqtt_connected": ("gauge", set()),
}


def receivers_of_layout() -> set[str]:
    from gateway.layoutfile import load_layout

    return set(load_layout(str(LAYOUT)).receiver_ids)


def test_metrics_and_status_carry_the_same_health(tmp_path: Path) -> None:
    port = free_port()
    with running_daemon(tmp_path, web=f"127.0.0.1:{port}") as r:
        st = r.backend.latest_status()  # the retained one, sent on connecting
        assert st is not None

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return str(resp.read().decode())

        def tracked() -> str | None:
            t = scrape()
            return t if "\nshelfgate_tags_tracked 0.0" not in t else None

        text = wait_for("tracked tags in /metrics", tracked, 30.0)
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        for name, (kind, labels) in RELIED_ON.items():
            assert name in fams, f"{name} missing from /metrics"
            f = fams[name]
            assert f.type == kind, f"{name}: {f.type}, expected {kind}"
            samples = [s for s in f.samples if not s.name.endswith("_created")]
            assert samples, f"{name} has no samples"
            want = name + "_total" if kind == "counter" else name
            for s in samples:
                assert s.name == want, s
                assert set(s.labels) == labels, f"{name}: labels {set(s.labels)}, expected {labels}"
        rx = receivers_of_layout()
        adverts = {s.labels["receiver"]: s.value for s in fams["shelfgate_adverts"].samples
                   if s.name == "shelfgate_adverts_total"}  # fmt: skip
        assert set(adverts) == rx and sum(adverts.values()) > 0
        heard = {
            s.labels["receiver"] for s in fams["shelfgate_receiver_last_heard_seconds"].samples
        }
        assert heard == rx
        reasons = {s.labels["reason"] for s in fams["shelfgate_dropped_events"].samples}
        assert {"dwell", "dwell_threshold", "offer_triggered"} <= reasons
        assert fams["shelfgate_mqtt_connected"].samples[0].value == 1.0
        assert fams["shelfgate_tags_tracked"].samples[0].value > 0

        # the status message: the same figures, valid against the published schema
        validator("status.schema.json").validate(st)
        assert set(st["receivers"]) == rx
        # the periodic status comes every 30 s: the `status` command gives the same one now
        now = r.backend.reply(r.backend.command("status"))["result"]
        validator("status.schema.json").validate(now)
        for rid, h in now["receivers"].items():
            assert h["state"] == "ok" and h["last_heard_s"] is not None and h["last_heard_s"] < 15
            assert h["adverts"] > 0 and h["adverts_per_s"] > 0, (rid, h)
        assert sum(h["adverts"] for h in now["receivers"].values()) >= sum(adverts.values())
        assert now["mqtt"]["connected"] is True and now["mqtt"]["broker"] == r.broker.url
        assert now["config"] == {"version": None, "rejected": None, "state": "file"}
        for key in ("backlog", "oldest_age_s", "drops", "dead_letter"):
            assert key in now
