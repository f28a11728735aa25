"""The classifier's per-decision work is bounded by the neighbourhood, not the floor; pruning
to that neighbourhood decides like scoring the whole floor."""

from __future__ import annotations

import numpy as np

from benchmarks.traces import hall
from gateway.layoutfile import load_layout
from positioning.classifier import ClassifierParams, ZoneClassifier
from positioning.pathloss import RadioModel, predicted_rssi

from .conftest import ROOT


def test_work_per_decision_does_not_grow_with_the_floor() -> None:
    # beyond the size of one neighbourhood (~1,000 m^2), a larger floor adds no work per decision
    small = ZoneClassifier(hall(3000.0), RadioModel())
    large = ZoneClassifier(hall(6000.0), RadioModel())
    assert len(large.xs) > 1.9 * len(small.xs)  # twice the floor, the same grid
    for attr in ("idx", "local"):
        worst_small = max(len(getattr(a, attr)) for a in small._areas)
        worst_large = max(len(getattr(a, attr)) for a in large._areas)
        assert worst_large <= 1.3 * worst_small, attr


def test_pruned_decisions_match_the_whole_floor() -> None:
    layout = load_layout(ROOT / "config" / "layout.toml")
    model = RadioModel()
    pruned = ZoneClassifier(layout, model)
    whole = ZoneClassifier(
        layout, model, ClassifierParams(candidate_radius_m=1e4, local_radius_m=1e4)
    )
    assert len(whole._areas[0].idx) == len(whole.xs)
    rng = np.random.default_rng(4)
    x0, y0, x1, y1 = layout.bounds()
    xs, ys = rng.uniform(x0, x1, 400), rng.uniform(y0, y1, 400)
    lv = predicted_rssi(model, layout, xs, ys) + rng.normal(0, 4, (400, len(layout.receivers)))
    heard = lv > -92.0
    a = pruned.log_likelihood_batch(heard, lv).argmax(axis=1)
    b = whole.log_likelihood_batch(heard, lv).argmax(axis=1)
    assert (a == b).mean() >= 0.95
