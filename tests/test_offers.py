"""Offer catalogue validation and matching: caps, cooldowns, priority, audience, time zones, DST."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.outbox import Outbox
from positioning.offers import CatalogueError, OfferMatcher, parse_catalogue

BERLIN = ZoneInfo("Europe/Berlin")
TAG = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:7"


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=BERLIN).timestamp()


def cat(*offers: dict, version: int = 1) -> object:
    return parse_catalogue({"version": version, "offers": list(offers)})


def stay(
    m: OfferMatcher,
    tag: str,
    zone: str,
    start: float,
    until: float,
    step: float = 1.0,
    synced: bool = True,
):
    m.sync_stays([(tag, zone, start, False)])
    out = []
    t = start
    while t <= until:
        out += m.tick(t, synced)
        t += step
    m.sync_stays([])
    return out


def test_defaults_and_trigger_moment() -> None:
    c = cat({"id": "a", "zones": ["fasteners"], "min_dwell_s": 120})
    o = c.offers[0]
    assert (o.max_per_tag, o.period, o.priority, o.cooldown_s, o.audience) == (1, "day", 0, 0.0, ())
    m = OfferMatcher(c, "Europe/Berlin")
    t0 = at(2026, 11, 23, 10)
    trig = stay(m, TAG, "fasteners", t0, t0 + 300)
    assert len(trig) == 1 and trig[0].at == t0 + 120 and trig[0].offer.id == "a"
    assert stay(m, TAG, "fasteners", t0 + 600, t0 + 60) == []  # short stay: nothing


def test_once_per_local_day_across_restart(tmp_path: Path) -> None:
    c = cat({"id": "a", "zones": ["z"], "min_dwell_s": 60})
    ob = Outbox(tmp_path / "o.db")
    m = OfferMatcher(c, "Europe/Berlin", history_key=lambda t: "p:" + t[-4:])
    t0 = at(2026, 11, 23, 22, 30)
    trig = stay(m, TAG, "z", t0, t0 + 100)
    assert len(trig) == 1
    ob.append([{"event_id": "x", "type": "offer_triggered"}], [("p:" + TAG[-4:], "a", trig[0].at)])
    ob.close()
    # the daemon restarts: the cap comes back from the outbox
    ob = Outbox(tmp_path / "o.db")
    m2 = OfferMatcher(
        c, "Europe/Berlin", ob.trigger_history(t0 - 8 * 86400), history_key=lambda t: "p:" + t[-4:]
    )
    assert stay(m2, TAG, "z", t0 + 200, t0 + 400) == []  # same day in Berlin
    nxt = at(2026, 11, 24, 0, 10)  # after local midnight (23:10 UTC the day before)
    assert len(stay(m2, TAG, "z", nxt, nxt + 100)) == 1


def test_priority_audience_cooldown_and_max_per_tag() -> None:
    c = cat(
        {"id": "low", "zones": ["z"], "min_dwell_s": 60, "priority": 1},
        {
            "id": "high",
            "zones": ["z"],
            "min_dwell_s": 60,
            "priority": 9,
            "audience": ["ibeacon:f7826da6"],
        },
        {"id": "later", "zones": ["z"], "min_dwell_s": 200, "max_per_tag": 2, "cooldown_s": 3600},
    )
    m = OfferMatcher(c, "Europe/Berlin")
    t0 = at(2026, 11, 23, 9)
    got = [x.offer.id for x in stay(m, TAG, "z", t0, t0 + 300)]
    assert got == ["high", "later"]  # one per crossing moment, the highest priority
    other = "eddystone:5368656c666761746521:000000000001"
    assert [x.offer.id for x in stay(m, other, "z", t0, t0 + 100)] == [
        "low"
    ]  # not in high's audience
    # "high" has had its one per day, so "low" is the best eligible now; "later" (2 per day,
    # an hour apart) is cooling down
    assert [x.offer.id for x in stay(m, TAG, "z", t0 + 1000, t0 + 1300)] == ["low"]
    assert [x.offer.id for x in stay(m, TAG, "z", t0 + 4000, t0 + 4300)] == ["later"]
    assert [x.offer.id for x in stay(m, TAG, "z", t0 + 9000, t0 + 9300)] == []


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        ((2026, 3, 28, 8, 30), True),  # Saturday before the spring change, CET
        ((2026, 3, 29, 8, 30), False),  # Sunday: not a window day
        ((2026, 3, 30, 7, 59), False),  # Monday CEST, a minute early in local time
        ((2026, 3, 30, 8, 0), True),
        ((2026, 10, 24, 19, 59), True),  # Saturday before the autumn change
        ((2026, 10, 26, 20, 0), False),
    ],
)
def test_weekly_window_in_store_time_across_dst(
    when: tuple[int, int, int, int, int], inside: bool
) -> None:
    c = cat(
        {
            "id": "w",
            "zones": ["z"],
            "min_dwell_s": 60,
            "windows": [
                {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "from": "08:00", "to": "20:00"}
            ],
        }
    )
    m = OfferMatcher(c, "Europe/Berlin")
    start = at(*when) - 60  # the stay reaches 60 s exactly at `when`
    assert (len(stay(m, TAG, "z", start, start + 61)) == 1) is inside


def test_window_past_midnight_and_validity() -> None:
    c = cat(
        {
            "id": "n",
            "zones": ["z"],
            "min_dwell_s": 10,
            "windows": [{"days": ["fri"], "from": "22:00", "to": "02:00"}],
            "valid_from": "2026-11-01T00:00:00+01:00",
            "valid_to": "2026-12-01T00:00:00+01:00",
        }
    )
    m = OfferMatcher(c, "Europe/Berlin")
    sat_1am = at(2026, 11, 28, 1, 0)  # Friday night's window, after midnight
    assert len(stay(m, TAG, "z", sat_1am, sat_1am + 20)) == 1
    assert stay(m, "x:" + TAG, "z", at(2026, 11, 28, 3), at(2026, 11, 28, 3) + 20) == []
    assert (
        stay(m, "y:" + TAG, "z", at(2026, 12, 5, 1), at(2026, 12, 5, 1) + 20) == []
    )  # after valid_to


def test_unsynced_clock_only_untimed_offers() -> None:
    c = cat(
        {"id": "timed", "zones": ["z"], "min_dwell_s": 30, "valid_to": "2030-01-01T00:00:00+00:00"},
        {"id": "plain", "zones": ["z"], "min_dwell_s": 30, "priority": -1},
    )
    m = OfferMatcher(c, "Europe/Berlin")
    t0 = at(2026, 11, 23, 12)
    assert [x.offer.id for x in stay(m, TAG, "z", t0, t0 + 40, synced=False)] == ["plain"]


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"offers": []}, "$.version"),
        ({"version": 2, "offers": [{"zones": ["z"], "min_dwell_s": 1}]}, "$.offers[0].id"),
        (
            {"version": 2, "offers": [{"id": "a", "zones": [], "min_dwell_s": 1}]},
            "$.offers[0].zones",
        ),
        ({"version": 2, "offers": [{"id": "a", "zones": ["z"]}]}, "$.offers[0].min_dwell_s"),
        (
            {"version": 2, "offers": [{"id": "a", "zones": ["z"], "min_dwell_s": -5}]},
            "$.offers[0].min_dwell_s",
        ),
        (
            {
                "version": 2,
                "offers": [{"id": "a", "zones": ["z"], "min_dwell_s": 5, "valid_to": "2026-12-01"}],
            },
            "$.offers[0].valid_to",
        ),
        (
            {
                "version": 2,
                "offers": [
                    {
                        "id": "a",
                        "zones": ["z"],
                        "min_dwell_s": 5,
                        "windows": [{"days": ["fr"], "from": "08:00", "to": "09:00"}],
                    }
                ],
            },
            "$.offers[0].windows[0].days",
        ),
        (
            {
                "version": 2,
                "offers": [{"id": "a", "zones": ["z"], "min_dwell_s": 5, "colour": "red"}],
            },
            "$.offers[0].colour",
        ),
        (
            {
                "version": 2,
                "offers": [
                    {"id": "a", "zones": ["z"], "min_dwell_s": 5},
                    {"id": "a", "zones": ["y"], "min_dwell_s": 5},
                ],
            },
            "$.offers",
        ),
    ],
)
def test_invalid_catalogues_name_the_field(obj: dict, where: str) -> None:
    with pytest.raises(CatalogueError) as e:
        parse_catalogue(obj)
    assert e.value.where == where


def test_example_catalogue_matches_the_json_schema() -> None:
    import json

    import jsonschema

    root = Path(__file__).parent.parent / "config"
    schema = json.loads((root / "schemas" / "offers.schema.json").read_text())
    example = json.loads((root / "offers.example.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(example)
    parse_catalogue(example)


def test_a_large_catalogue_with_a_duplicate_is_rejected_in_linear_time() -> None:
    """100k offers with one duplicate id at the end: rejected, naming both offers (the old
    quadratic check froze the daemon for minutes on 60-80k offers)."""
    import time

    offers = [{"id": f"o-{i}", "zones": ["z"], "min_dwell_s": 5} for i in range(100_000)]
    offers[-1]["id"] = "o-17"
    t0 = time.process_time()
    with pytest.raises(
        CatalogueError, match=r"duplicate offer id 'o-17' \(offers \[17\] and \[99999\]\)"
    ):
        parse_catalogue({"version": 1, "offers": offers})
    assert time.process_time() - t0 < 30.0  # minutes before; a generous bound, not a benchmark


def test_catalogue_limits_and_unknown_zones_are_reasons() -> None:
    offers = [{"id": f"o-{i}", "zones": ["z"], "min_dwell_s": 5} for i in range(11)]
    with pytest.raises(CatalogueError, match="11 offers; at most 10"):
        parse_catalogue({"version": 1, "offers": offers}, max_offers=10)
    with pytest.raises(CatalogueError) as e:
        parse_catalogue({"version": 1, "offers": offers}, zones=["fasteners", "paint"])
    assert e.value.where == "$.offers[0].zones" and "'z' is not in the store layout" in str(e.value)
    parse_catalogue({"version": 1, "offers": offers}, zones=["z"])  # fine
