"""Offers: the catalogue format, its validation, and dwell-triggered matching (pure, no IO).

A catalogue is `{"version": N, "offers": [...]}`; an offer:

    id           string, required
    zones        list of zone ids, required
    min_dwell_s  number > 0, required: the offer triggers when a stay in one of its zones
                 reaches this long
    valid_from / valid_to   ISO 8601 with offset; default: always valid
    windows      weekly opening windows in the store's timezone, e.g.
                 [{"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "from": "08:00", "to": "20:00"}];
                 default: any time
    audience     tag-id prefixes ("ibeacon:<uuid>", "ibeacon:<uuid>:<major>", "eddystone:<ns>"); default: any tag
    max_per_tag  triggers per tag per `period`; default 1
    period       "day" (store-local calendar day, DST-correct), "week" (ISO week), "stay"; default "day"
    cooldown_s   seconds between two triggers of this offer for one tag; default 0
    priority     integer, higher first; default 0
    payload      anything: passed to the app by reference (`payload_ref`), never interpreted here

Matching rule: when a stay crosses the `min_dwell_s` of one or more offers of its zone at the
same moment, the eligible one with the highest priority (then the lowest id) triggers; the
others crossed at that moment do not trigger for this stay. Offers with a longer `min_dwell_s`
can still trigger later in the same stay.

While the wall clock is not synchronised (a Pi has no RTC), offers with `valid_from`,
`valid_to` or `windows` do not trigger: their time cannot be judged. Offers without time limits
do, counted against the wall clock as it is.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PERIODS = ("day", "week", "stay")
KNOWN_KEYS = {
    "id",
    "zones",
    "min_dwell_s",
    "valid_from",
    "valid_to",
    "windows",
    "audience",
    "max_per_tag",
    "period",
    "cooldown_s",
    "priority",
    "payload",
}


class CatalogueError(ValueError):
    """An invalid catalogue: `where` is the JSON path of the problem."""

    def __init__(self, where: str, expected: str) -> None:
        self.where = where
        super().__init__(f"{where}: {expected}")


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start_min: int  # minutes after local midnight
    end_min: int  # exclusive; may be <= start_min for windows past midnight

    def contains(self, local: dt.datetime) -> bool:
        m = local.hour * 60 + local.minute
        if self.start_min < self.end_min:
            return local.weekday() in self.days and self.start_min <= m < self.end_min
        # past midnight: the part after midnight belongs to the previous day's window
        if m >= self.start_min:
            return local.weekday() in self.days
        return m < self.end_min and (local.weekday() - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class Offer:
    id: str
    zones: tuple[str, ...]
    min_dwell_s: float
    valid_from: float | None = None
    valid_to: float | None = None
    windows: tuple[Window, ...] = ()
    audience: tuple[str, ...] = ()
    max_per_tag: int = 1
    period: str = "day"
    cooldown_s: float = 0.0
    priority: int = 0
    payload: Any = None

    @property
    def time_limited(self) -> bool:
        return self.valid_from is not None or self.valid_to is not None or bool(self.windows)

    def for_audience(self, tag: str) -> bool:
        return not self.audience or any(tag.startswith(a) for a in self.audience)


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: int
    offers: tuple[Offer, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def _iso(where: str, v: Any) -> float:
    if not isinstance(v, str):
        raise CatalogueError(
            where, "expected an ISO 8601 date-time with offset, e.g. 2026-12-01T08:00:00+01:00"
        )
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise CatalogueError(where, f"not an ISO 8601 date-time: {v!r}") from None
    if t.tzinfo is None:
        raise CatalogueError(where, f"needs a UTC offset (e.g. +01:00): {v!r}")
    return t.timestamp()


def _hhmm(where: str, v: Any) -> int:
    if not isinstance(v, str) or len(v) != 5 or v[2] != ":":
        raise CatalogueError(where, "expected HH:MM")
    try:
        h, m = int(v[:2]), int(v[3:])
    except ValueError:
        raise CatalogueError(where, "expected HH:MM") from None
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise CatalogueError(where, "expected a time from 00:00 to 24:00")
    return h * 60 + m


def _num(where: str, v: Any, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise CatalogueError(where, "expected a number")
    if positive and v <= 0:
        raise CatalogueError(where, "expected a number > 0")
    if v < 0:
        raise CatalogueError(where, "expected a number >= 0")
    return float(v)


def parse_offer(o: Any, where: str) -> Offer:
    if not isinstance(o, dict):
        raise CatalogueError(where, "expected an object")
    unknown = set(o) - KNOWN_KEYS
    if unknown:
        raise CatalogueError(
            f"{where}.{sorted(unknown)[0]}", f"unknown key; expected one of {sorted(KNOWN_KEYS)}"
        )
    oid = o.get("id")
    if not isinstance(oid, str) or not oid:
        raise CatalogueError(f"{where}.id", "expected a non-empty string")
    zones = o.get("zones")
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones):
        raise CatalogueError(f"{where}.zones", "expected a non-empty list of zone ids")
    if "min_dwell_s" not in o:
        raise CatalogueError(f"{where}.min_dwell_s", "required: seconds a stay must last")
    min_dwell = _num(f"{where}.min_dwell_s", o["min_dwell_s"], positive=True)
    vf = _iso(f"{where}.valid_from", o["valid_from"]) if o.get("valid_from") is not None else None
    vt = _iso(f"{where}.valid_to", o["valid_to"]) if o.get("valid_to") is not None else None
    if vf is not None and vt is not None and vt <= vf:
        raise CatalogueError(f"{where}.valid_to", "must be after valid_from")
    windows: list[Window] = []
    for i, w in enumerate(o.get("windows") or []):
        ww = f"{where}.windows[{i}]"
        if not isinstance(w, dict):
            raise CatalogueError(ww, 'expected {"days": [...], "from": "HH:MM", "to": "HH:MM"}')
        days = w.get("days", list(DAYS))
        if not isinstance(days, list) or not days or not all(d in DAYS for d in days):
            raise CatalogueError(f"{ww}.days", f"expected a list of {', '.join(DAYS)}")
        windows.append(
            Window(
                frozenset(DAYS.index(d) for d in days),
                _hhmm(f"{ww}.from", w.get("from")),
                _hhmm(f"{ww}.to", w.get("to")),
            )
        )
    audience = o.get("audience") or []
    if not isinstance(audience, list) or not all(isinstance(a, str) and a for a in audience):
        raise CatalogueError(f"{where}.audience", "expected a list of tag-id prefixes")
    max_per = o.get("max_per_tag", 1)
    if isinstance(max_per, bool) or not isinstance(max_per, int) or max_per < 1:
        raise CatalogueError(f"{where}.max_per_tag", "expected an integer >= 1")
    period = o.get("period", "day")
    if period not in PERIODS:
        raise CatalogueError(f"{where}.period", f"expected one of {', '.join(PERIODS)}")
    prio = o.get("priority", 0)
    if isinstance(prio, bool) or not isinstance(prio, int):
        raise CatalogueError(f"{where}.priority", "expected an integer")
    return Offer(
        oid,
        tuple(zones),
        min_dwell,
        vf,
        vt,
        tuple(windows),
        tuple(audience),
        max_per,
        period,
        _num(f"{where}.cooldown_s", o.get("cooldown_s", 0)),
        prio,
        o.get("payload"),
    )


MAX_OFFERS = 100_000


def parse_catalogue(
    obj: Any, zones: Collection[str] | None = None, max_offers: int = MAX_OFFERS
) -> Catalogue:
    """Validate a catalogue in linear time; raises CatalogueError naming the JSON path of the
    first problem. With `zones` (the layout's), an offer naming another zone is rejected: a typo
    in a zone id would otherwise never trigger, silently."""
    if not isinstance(obj, dict):
        raise CatalogueError("$", 'expected an object {"version": N, "offers": [...]}')
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CatalogueError(
            "$.version", "expected an integer >= 1 that increases with every change"
        )
    offers = obj.get("offers")
    if not isinstance(offers, list):
        raise CatalogueError("$.offers", "expected a list of offers")
    if len(offers) > max_offers:
        raise CatalogueError("$.offers", f"{len(offers)} offers; at most {max_offers} are taken")
    parsed = [parse_offer(o, f"$.offers[{i}]") for i, o in enumerate(offers)]
    if zones is not None:
        known = set(zones)
        for i, o in enumerate(parsed):
            unknown = [z for z in o.zones if z not in known]
            if unknown:
                raise CatalogueError(
                    f"$.offers[{i}].zones",
                    f"zone {unknown[0]!r} is not in the store layout (zones: {', '.join(sorted(known))})",
                )
    first: dict[str, int] = {}
    for i, o in enumerate(parsed):  # linear: a 100k-offer catalogue is checked in milliseconds
        if o.id in first:
            raise CatalogueError(
                "$.offers", f"duplicate offer id {o.id!r} (offers [{first[o.id]}] and [{i}])"
            )
        first[o.id] = i
    return Catalogue(version, tuple(parsed), obj)


@dataclass(frozen=True, slots=True)
class Trigger:
    offer: Offer
    catalogue_version: int
    tag: str
    zone: str
    stay_start: float
    at: float  # the moment the stay reached offer.min_dwell_s


class _StayCursor:
    __slots__ = ("away", "next_i", "start", "zone")

    def __init__(self, zone: str, start: float) -> None:
        self.zone = zone
        self.start = start
        self.next_i = 0
        self.away = False


class OfferMatcher:
    """Decides offer triggers for ongoing stays. Time is wall time (unix seconds) of the input.

    `history` holds past triggers per (tag, offer id) as wall times; the gateway persists them
    (in the same transaction as the event) and hands them back after a restart.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        timezone: str,
        history: Iterable[tuple[str, str, float]] = (),
        history_key: Callable[[str], str] = str,
    ) -> None:
        """`history_key` maps a tag to the key its history is kept under (the gateway passes
        its pseudonymisation, so no raw id is stored)."""
        self.key = history_key
        try:
            self.tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CatalogueError("store.timezone", f"unknown time zone {timezone!r}") from None
        self.catalogue = catalogue
        self._by_zone: dict[str, list[Offer]] = {}
        for o in catalogue.offers:
            for z in o.zones:
                self._by_zone.setdefault(z, []).append(o)
        for lst in self._by_zone.values():
            lst.sort(key=lambda o: (o.min_dwell_s, -o.priority, o.id))
        self._thresholds = {z: [o.min_dwell_s for o in lst] for z, lst in self._by_zone.items()}
        self._stays: dict[str, _StayCursor] = {}
        self.history: dict[tuple[str, str], list[float]] = {}
        for tag, oid, t in history:
            self.history.setdefault((tag, oid), []).append(t)

    def replace_catalogue(self, catalogue: Catalogue) -> OfferMatcher:
        m = OfferMatcher(catalogue, self.tz.key, history_key=self.key)
        m.take_over(self)
        return m

    def take_over(self, old: OfferMatcher) -> None:
        """Continue from `old` (a previous catalogue's matcher): its trigger history and the
        stays it follows. Cheap: the index of a new catalogue can be built elsewhere first."""
        self.history = old.history
        for tag, st in old._stays.items():
            self.stay_started(tag, st.zone, st.start)

    def stay_started(self, tag: str, zone: str, start: float) -> None:
        self._stays[tag] = _StayCursor(zone, start)

    def sync_stays(self, ongoing: Iterable[tuple[str, str, float, bool]]) -> None:
        """Follow the dwell detector's open stays: (tag, zone, start, away)."""
        seen = set()
        for tag, zone, start, away in ongoing:
            seen.add(tag)
            st = self._stays.get(tag)
            if st is None or st.zone != zone or st.start != start:
                st = self._stays[tag] = _StayCursor(zone, start)
            st.away = away
        for tag in [t for t in self._stays if t not in seen]:
            del self._stays[tag]

    def tick(
        self, now: float, clock_synced: bool = True, wall_offset: float = 0.0
    ) -> list[Trigger]:
        """Triggers due by `now` (pipeline time; + wall_offset = wall time). Trigger times are
        in pipeline time too; history and calendar rules use wall time."""
        out: list[Trigger] = []
        for tag, st in self._stays.items():
            th = self._thresholds.get(st.zone)
            if th is None or st.next_i >= len(th) or st.away:
                continue
            elapsed = now - st.start
            end = bisect.bisect_right(th, elapsed, lo=st.next_i)
            if end == st.next_i:
                continue
            offers = self._by_zone[st.zone]
            # group by crossing moment: each moment triggers at most its best eligible offer
            i = st.next_i
            while i < end:
                j = i
                while j < end and th[j] == th[i]:
                    j += 1
                at = st.start + th[i]
                group = sorted(offers[i:j], key=lambda o: (-o.priority, o.id))
                for o in group:
                    if self.eligible(
                        o, tag, at + wall_offset, st.start + wall_offset, clock_synced
                    ):
                        self.history.setdefault((self.key(tag), o.id), []).append(at + wall_offset)
                        out.append(Trigger(o, self.catalogue.version, tag, st.zone, st.start, at))
                        break
                i = j
            st.next_i = end
        return out

    def eligible(
        self, o: Offer, tag: str, at: float, stay_start: float, clock_synced: bool
    ) -> bool:
        if not o.for_audience(tag):
            return False
        if o.time_limited:
            if not clock_synced:
                return False
            if o.valid_from is not None and at < o.valid_from:
                return False
            if o.valid_to is not None and at >= o.valid_to:
                return False
            if o.windows:
                local = dt.datetime.fromtimestamp(at, self.tz)
                if not any(w.contains(local) for w in o.windows):
                    return False
        past = self.history.get((self.key(tag), o.id), [])
        if past and o.cooldown_s and at - past[-1] < o.cooldown_s:
            return False
        if o.period == "stay":
            used = sum(1 for p in past if p >= stay_start)
        else:
            key = self._period_key(at, o.period)
            used = sum(1 for p in past if self._period_key(p, o.period) == key)
        return used < o.max_per_tag

    def _period_key(self, t: float, period: str) -> tuple[int, int]:
        local = dt.datetime.fromtimestamp(t, self.tz)
        if period == "week":
            iso = local.isocalendar()
            return iso.year, iso.week
        return local.year, local.timetuple().tm_yday

    def forget_before(self, t: float) -> None:
        """Drop history older than any period can look back (bounded memory)."""
        for k in list(self.history):
            self.history[k] = [p for p in self.history[k] if p >= t]
            if not self.history[k]:
                del self.history[k]
