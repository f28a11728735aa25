"""Dwell state machine: dropouts, flapping, threshold edges."""

from __future__ import annotations

from positioning.dwell import DwellDetector, DwellParams


def kinds(evs: list) -> list[tuple[str, str, float, float]]:
    return [(e.kind, e.zone, e.start, e.end) for e in evs]


def test_dwell_emitted_on_exit_with_threshold_first() -> None:
    d = DwellDetector(DwellParams(min_dwell_s=60, gap_s=10))
    assert d.update("t", "fasteners", 100.0) == []
    assert kinds(d.tick(159.0)) == []
    assert kinds(d.tick(160.0)) == [("dwell_threshold", "fasteners", 100.0, 160.0)]
    assert d.update("t", None, 200.0) == []
    assert kinds(d.tick(210.0)) == []  # still within the gap
    assert kinds(d.tick(210.5)) == [("dwell", "fasteners", 100.0, 200.0)]
    assert len(d) == 0


def test_short_dropout_does_not_split() -> None:
    d = DwellDetector(DwellParams(min_dwell_s=60, gap_s=10))
    d.update("t", "paint", 0.0)
    d.update("t", None, 40.0)  # body blocks the signal
    d.update("t", "paint", 45.0)
    d.update("t", None, 130.0)
    out = kinds(d.tick(150.0))
    assert out == [("dwell_threshold", "paint", 0.0, 60.0), ("dwell", "paint", 0.0, 130.0)]


def test_flapping_to_a_neighbour_does_not_split() -> None:
    d = DwellDetector(DwellParams(min_dwell_s=60, gap_s=10))
    d.update("t", "paint", 0.0)
    for k in range(10):
        d.update("t", "tools", 20.0 + 10 * k)
        d.update("t", "paint", 23.0 + 10 * k)
    d.update("t", None, 200.0)
    assert [e for e in kinds(d.tick(300.0)) if e[0] == "dwell"] == [("dwell", "paint", 0.0, 200.0)]


def test_threshold_edges() -> None:
    p = DwellParams(min_dwell_s=60, gap_s=5)
    d = DwellDetector(p)
    d.update("a", "z", 0.0)
    d.update("a", None, 59.999)
    assert kinds(d.tick(100.0)) == []  # just short
    d.update("b", "z", 0.0)
    d.update("b", None, 60.0)
    assert [k for k, *_ in kinds(d.tick(100.0))] == ["dwell_threshold", "dwell"]  # exactly enough


def test_moving_to_another_zone_starts_a_new_dwell() -> None:
    d = DwellDetector(DwellParams(min_dwell_s=30, gap_s=10))
    d.update("t", "a", 0.0)
    d.update("t", "b", 100.0)
    evs = kinds(d.tick(111.0))
    assert ("dwell", "a", 0.0, 100.0) in evs
    d.update("t", None, 200.0)
    evs = kinds(d.tick(300.0))
    assert ("dwell", "b", 100.0, 200.0) in evs


def test_lost_tag_closes_at_last_time_in_zone() -> None:
    d = DwellDetector(DwellParams(min_dwell_s=30, gap_s=10))
    d.update("t", "a", 0.0)
    d.update("t", None, 50.0)
    assert kinds(d.close("t", 80.0))[-1] == ("dwell", "a", 0.0, 50.0)
    assert d.next_deadline() is None
