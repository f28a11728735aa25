"""Stand memory (positioning/stand.py): a tag standing in a zone is scored by the point it holds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from positioning.classifier import ZoneClassifier
from positioning.pathloss import predicted_rssi
from positioning.stand import StandMemory

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
