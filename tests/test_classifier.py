"""Zone classifier on hand-built geometry: zones between receivers, gain differences, body loss."""

from __future__ import annotations

import numpy as np
import pytest

from positioning.belief import Beliefs
from positioning.classifier import ClassifierParams, ZoneClassifier
from positioning.layout import Layout, Receiver, Zone
from positioning.pathloss import RadioModel, ReceiverModel, predicted_rssi


def rect(zid: str, x0: float, y0: float, x1: float, y1: float) -> Zone:
    return Zone(zid, zid, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


# four zones, three receivers hung between them (fewer receivers than zones), an aisle between
LAYOUT = Layout(
    "test",
    "UTC",
    (Receiver("a", 5.0, 1.0, 3.0), Receiver("b", 15.0, 1.0, 3.0), Receiver("c", 10.0, 11.0, 3.0)),
    (
        rect("z1", 0, 0, 8, 4),
        rect("z2", 12, 0, 20, 4),
        rect("z3", 0, 8, 8, 12),
        rect("z4", 12, 8, 20, 12),
    ),
    width=20.0,
    depth=12.0,
)
# calibrated, well-behaved receivers: these tests are about geometry, not noise
MODEL = RadioModel(default=ReceiverModel(offset_db=-61.0, exponent=2.0, sigma_db=2.0))
# (and a fixed aisle prior: the tuned default moves with the motion model's tuning, while the
# aisle spot between the receivers below sits where a few points of prior decide)
PARAMS = ClassifierParams(extra_sigma_db=0.0, sigma_floor_db=1.0, aisle_prior=0.2)


def levels_at(model: RadioModel, x: float, y: float, offset: float = 0.0) -> list[float]:
    return (predicted_rssi(model, LAYOUT, np.array([x]), np.array([y]))[0] + offset).tolist()


def classify(clf: ZoneClassifier, lv: list[float]) -> str | None:
    heard = [i for i, v in enumerate(lv) if v > clf.sens]
    ll = clf.log_likelihood(heard, [lv[i] for i in heard])
    return clf.zone_ids[int(np.argmax(ll))]


@pytest.mark.parametrize(
    ("x", "y", "zone"),
    [(3, 2, "z1"), (17, 2, "z2"), (3, 10, "z3"), (17, 10, "z4"), (10, 6, None), (6, 3, "z1")],
)
def test_more_zones_than_receivers(x: float, y: float, zone: str | None) -> None:
    clf = ZoneClassifier(LAYOUT, MODEL, PARAMS)
    assert classify(clf, levels_at(MODEL, x, y)) == zone


def test_phone_transmit_offset_does_not_move_the_zone() -> None:
    clf = ZoneClassifier(LAYOUT, MODEL, PARAMS)
    for offset in (-6.0, 6.0):
        assert classify(clf, levels_at(MODEL, 17.0, 10.0, offset)) == "z4"


def test_receiver_gain_difference_is_absorbed_by_calibration() -> None:
    # receiver b hears 8 dB hot: the calibrated model places every spot right, the
    # uncalibrated one drags tags toward b
    hot = ReceiverModel(offset_db=-53.0, exponent=2.0, sigma_db=2.0)
    truth = RadioModel(receivers={"b": hot}, default=MODEL.default)
    spots = [
        (x, y, LAYOUT.zone_at(x, y)) for x in np.arange(0.5, 20, 1.0) for y in (1.0, 3.0, 9.0, 11.0)
    ]
    calibrated = ZoneClassifier(LAYOUT, truth, PARAMS)
    naive = ZoneClassifier(LAYOUT, MODEL, PARAMS)
    good_cal = sum(classify(calibrated, levels_at(truth, x, y)) == z for x, y, z in spots)
    good_naive = sum(classify(naive, levels_at(truth, x, y)) == z for x, y, z in spots)
    assert good_cal >= 0.9 * len(spots)
    assert good_cal > good_naive


def test_unheard_receiver_is_evidence() -> None:
    clf = ZoneClassifier(LAYOUT, MODEL, PARAMS)
    lv = levels_at(MODEL, 5.0, 1.0)
    # only receiver a hears the tag, loudly: zones next to b and c would have been heard there
    ll = clf.log_likelihood([0], [lv[0]])
    assert ll[clf.zone_ids.index("z4")] < ll[clf.zone_ids.index("z1")] - 5
    assert ll[clf.zone_ids.index("z2")] < ll[clf.zone_ids.index("z1")] - 5


# a row of four zones, a receiver over the middle of each
ROW = Layout(
    "row",
    "UTC",
    tuple(Receiver(f"r{i}", 3.0 + 6 * i, 2.0, 3.0) for i in range(4)),
    tuple(rect(f"z{i}", 6 * i + 0.5, 0, 6 * i + 5.5, 4) for i in range(4)),
    width=24.0,
    depth=4.0,
)


def test_a_silent_receiver_does_not_outweigh_the_heard_ones() -> None:
    # the tag stands under r1, which hears nothing (a body between, or r1 is dead); r0, r2, r3
    # hear it exactly as the model says: the zone is still z1. A Gaussian penalty on the
    # silence (0.5 u^2 at ~12 sigmas) would send it to z2.
    clf = ZoneClassifier(ROW, MODEL, PARAMS)
    lv = predicted_rssi(MODEL, ROW, np.array([9.0]), np.array([2.0]))[0]
    ll = clf.log_likelihood([0, 2, 3], [float(lv[i]) for i in (0, 2, 3)])
    assert clf.zone_ids[int(np.argmax(ll))] == "z1"
    # still evidence: the same levels with r1 heard where the model says are surer of z1
    full = clf.log_likelihood([0, 1, 2, 3], lv.tolist())
    z1 = clf.zone_ids.index("z1")
    assert full[z1] - np.delete(full, z1).max() > ll[z1] - np.delete(ll, z1).max()


class OneTag:
    """One tag's row of Beliefs, fed one decision at a time."""

    def __init__(self, n_classes: int) -> None:
        self.b = Beliefs(n_classes, slots=1)

    @property
    def current(self) -> int:
        return int(self.b.current[0])

    def update(self, ll: np.ndarray, t: float, p: ClassifierParams) -> tuple[int, float] | None:
        change, best, since = self.b.update(np.zeros(1, dtype=np.int64), ll[None], np.array([t]), p)
        return (int(best[0]), float(since[0])) if change[0] else None


def test_hysteresis_no_flapping_between_adjacent_zones() -> None:
    model = MODEL
    p = PARAMS
    clf = ZoneClassifier(LAYOUT, model, p)
    belief = OneTag(clf.n_classes)
    rng = np.random.default_rng(1)
    changes = []
    t = 0.0
    for _ in range(30):  # settle in z2
        t += 1.0
        lv = levels_at(model, 4.0, 2.0)
        ch = belief.update(clf.log_likelihood([0, 1, 2], lv), t, p)
        if ch:
            changes.append(ch)
    assert clf.zone_ids[belief.current] == "z1"
    changes.clear()
    # standing on the z1 side of the z1/aisle border with noisy levels: no flapping
    for _ in range(120):
        t += 1.0
        lv = [v + rng.normal(0, 2.0) for v in levels_at(model, 7.5, 2.0)]
        ch = belief.update(clf.log_likelihood([0, 1, 2], lv), t, p)
        if ch:
            changes.append(ch)
    assert len(changes) <= 2
    # walking on into z2: the change comes, dated back to when z2 started to lead
    for _ in range(10):
        t += 1.0
        ch = belief.update(clf.log_likelihood([0, 1, 2], levels_at(model, 16.0, 2.0)), t, p)
        if ch:
            changes.append(ch)
    assert clf.zone_ids[belief.current] == "z2"
    assert changes[-1][1] <= t - p.confirm_s
