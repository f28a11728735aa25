"""Stand memory (positioning/stand.py): a tag standing in a zone is scored by the point it holds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from positioning.classifier import ZoneClassifier
from positioning.pathloss import RadioModel, predicted_rssi
from positioning.stand import StandMemory
from positioning.tracker import TrackerParams, ZoneTracker

from .test_classifier import LAYOUT, MODEL, PARAMS

STAND = replace(PARAMS, stand_memory_s=60.0)


def decide(
    clf: ZoneClassifier, mem: StandMemory, lv: np.ndarray, t: float, slot: int = 0
) -> np.ndarray:
    heard = np.ones((1, len(lv)), dtype=bool)
    ll, _ = clf.log_likelihood_offsets(
        heard, lv[None], np.zeros(1), np.full(1, clf.shrink), (mem, np.array([slot]), np.array([t]))
    )
    return ll[0]


def test_a_tag_standing_near_its_zones_edge_is_placed_by_the_point_it_holds() -> None:
    # the tag stands still at (7.5, 3.5), in z1 near its corner by the aisle; each decision's
    # levels are noisy (3 dB), so each alone fits some aisle point about as well as a z1 one.
    # Over 30 s the evidence of one point held says z1 (without the memory, 4 seeds of 10).
    clf = ZoneClassifier(LAYOUT, MODEL, STAND)
    true = predicted_rssi(MODEL, LAYOUT, np.array([7.5]), np.array([3.5]))[0]
    right = 0
    for seed in range(1, 11):
        rng = np.random.default_rng(seed)
        mem = StandMemory()
        total = sum(
            decide(clf, mem, true + rng.normal(0, 3, len(true)), float(t)) for t in range(30)
        )
        right += clf.zone_ids[int(np.argmax(total))] == "z1"
    assert right >= 9


def test_a_new_tag_and_a_cleared_slot_are_scored_afresh() -> None:
    fresh = ZoneClassifier(LAYOUT, MODEL, replace(PARAMS, stand_memory_s=0.0))
    clf = ZoneClassifier(LAYOUT, MODEL, STAND)
    mem = StandMemory()
    a = predicted_rssi(MODEL, LAYOUT, np.array([3.0]), np.array([2.0]))[0]
    b = predicted_rssi(MODEL, LAYOUT, np.array([17.0]), np.array([10.0]))[0]
    expect = fresh.log_likelihood_batch(np.ones((1, 3), dtype=bool), b[None])[0]
    first = decide(clf, mem, b, 0.0)
    np.testing.assert_allclose(first, expect, rtol=1e-9)
    # the same slot, a while standing at a: its next decision at b is not a fresh one ...
    for t in range(1, 20):
        decide(clf, mem, a, float(t))
    assert not np.allclose(decide(clf, mem, b, 20.0), expect)
    # ... until the slot is cleared (a new tag in it)
    for t in range(21, 40):
        decide(clf, mem, a, float(t))
    mem.clear(0)
    np.testing.assert_allclose(decide(clf, mem, b, 40.0), expect, rtol=1e-9)


def test_the_tracker_starts_a_new_tag_and_a_lost_one_without_a_stand() -> None:
    # (the tracker's side of stand.py: a reused slot, or a tag lost and heard again, must not
    # inherit where the slot's last tag stood)
    from .test_tag_offset import LAYOUT as ROOMS
    from .test_tag_offset import MODEL as ROOMS_MODEL
    from .test_tag_offset import stand

    def first_decision(trk: ZoneTracker, tag: str, t: float) -> np.ndarray:
        trk.observe_sightings([(tag, i, v, t) for i, v in enumerate((-62.0, -75.0, -75.0, -80.0))])
        slot = trk._tags[tag].slot
        return trk._stand.post[slot, : len(trk.classifier._zone_idx[trk._stand.area[slot]])]

    expect = first_decision(ZoneTracker(ROOMS, ROOMS_MODEL), "ibeacon:new:1:3", 100.0)
    trk = ZoneTracker(ROOMS, ROOMS_MODEL, TrackerParams(max_tags=1))
    stand(trk, "ibeacon:first:1:1", 11.0, 10.0, 0.0, 0.0)
    slot = trk._tags["ibeacon:first:1:1"].slot
    got = first_decision(trk, "ibeacon:new:1:3", 100.0)
    assert trk._tags["ibeacon:new:1:3"].slot == slot  # the evicted tag's slot, reused
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    # the same tag lost (its phone's offset is kept: compare the memory, not the decision)
    stand(trk, "ibeacon:new:1:3", 11.0, 10.0, 0.0, 110.0)
    assert trk._stand.area[slot] >= 0
    trk.tick(200.0)
    assert trk._stand.area[slot] == -1


def test_a_tag_entering_a_zone_it_walked_past_is_not_held_at_its_edge() -> None:
    # a walk recorded from the serial emulators of test_serial (a, aisle, b, a, b; 3-4 s each):
    # while the tag was in the aisle, b's stand posterior drifted to b's edge by the aisle, and
    # without a floor on the fresh-point share the tag entering b was called "no zone" to the end
    import json

    from gateway.layoutfile import load_layout

    d = Path(__file__).parent / "data" / "edge-walk"
    lay = load_layout(d / "layout.toml")
    model = RadioModel.from_json(json.loads((d / "cal.json").read_text())["radio_model"])
    rows = [json.loads(x) for x in (d / "walk.jsonl").read_text().splitlines()]
    idx = lay.receiver_index()
    tag = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:7"
    tr = ZoneTracker(lay, model, TrackerParams(), record_segments=True)
    last = -1e18
    for o in rows:
        tr.observe(tag, idx[o["rx"]], float(o["rssi"]), o["t"])
        if o["t"] - last >= 1.0:
            tr.tick(o["t"])
            last = o["t"]
    tr.finish(rows[-1]["t"])
    visited = [s.zone for s in tr.segments if s.end - s.start >= 2.0]
    assert visited[:1] == ["a"] and "b" in visited and visited.count("a") >= 2, visited
