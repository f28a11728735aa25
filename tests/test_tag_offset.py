"""A phone's transmit offset is learnt per tag from its decisions, and a tag that is new starts
from the calibration's spread again."""

from __future__ import annotations

import numpy as np

from positioning.layout import Layout, Receiver, Zone
from positioning.pathloss import RadioModel, ReceiverModel, predicted_rssi
from positioning.tracker import TrackerParams, ZoneTracker


def rect(zid: str, x0: float, y0: float, x1: float, y1: float) -> Zone:
    return Zone(zid, zid, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


LAYOUT = Layout(
    "offsets",
    "UTC",
    tuple(
        Receiver(f"r{i}", x, y, 3.0)
        for i, (x, y) in enumerate([(3, 3), (12, 3), (3, 10), (12, 10)])
    ),
    (
        rect("a", 0, 0, 6, 5),
        rect("b", 9, 0, 15, 5),
        rect("c", 0, 8, 6, 13),
        rect("d", 9, 8, 15, 13),
    ),
    width=15.0,
    depth=13.0,
)
MODEL = RadioModel(default=ReceiverModel(offset_db=-61.0, exponent=2.0, sigma_db=3.0))


def stand(trk: ZoneTracker, tag: str, x: float, y: float, offset_db: float, t0: float) -> None:
    rng = np.random.default_rng(7)
    lv0 = predicted_rssi(MODEL, LAYOUT, np.array([x]), np.array([y]))[0] + offset_db
    for k in range(200):
        t = t0 + 0.3 * k
        lv = lv0 + rng.normal(0, 3.0, len(lv0))
        trk.observe_sightings([(tag, i, float(v), t + 0.001 * i) for i, v in enumerate(lv)])
        trk.tick(t)


def learnt_offset(trk: ZoneTracker, tag: str) -> float:
    b = trk._beliefs
    slot = trk._tags[tag].slot
    mean, _ = b.offset_prior(np.array([slot]), MODEL.device_sigma_db, trk.params.classifier)
    return float(mean[0])


def test_a_loud_phone_offset_is_learnt_and_a_quiet_one_too() -> None:
    trk = ZoneTracker(LAYOUT, MODEL, TrackerParams(), record_segments=True)
    stand(trk, "ibeacon:loud:1:1", 4.0, 2.5, +7.0, 0.0)
    stand(trk, "ibeacon:quiet:1:2", 11.0, 10.0, -6.0, 0.0)
    # (shrunk toward 0, and a quiet phone loses its farthest receivers: within 3 dB)
    assert abs(learnt_offset(trk, "ibeacon:loud:1:1") - 7.0) < 3.0
    assert abs(learnt_offset(trk, "ibeacon:quiet:1:2") + 6.0) < 3.0
    trk.finish(60.0)
    zones = {s.tag: s.zone for s in trk.segments if s.zone is not None}
    assert zones == {"ibeacon:loud:1:1": "a", "ibeacon:quiet:1:2": "d"}


def test_a_new_tag_in_a_reused_slot_starts_from_no_offset() -> None:
    trk = ZoneTracker(LAYOUT, MODEL, TrackerParams(max_tags=1))
    stand(trk, "ibeacon:loud:1:1", 4.0, 2.5, +7.0, 0.0)
    slot = trk._tags["ibeacon:loud:1:1"].slot
    trk.observe_sightings([("ibeacon:new:1:3", 0, -60.0, 100.0)])
    assert trk._tags["ibeacon:new:1:3"].slot == slot  # the evicted tag's slot, reused
    # only the new tag's own first decision counts, not the loud phone's 60
    assert trk._beliefs.offset_n[slot] == 1.0
    assert abs(learnt_offset(trk, "ibeacon:new:1:3")) < 3.0
