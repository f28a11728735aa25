"""Turning pipeline output into wire events (DESIGN.md fields), with pseudonymised tags."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from positioning.types import DwellEvent

if TYPE_CHECKING:
    from positioning.offers import Trigger

EVENT_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Identity:
    store: str
    gateway: str
    secret: bytes
    raw_ids: bool = False
    group: str | None = None  # gateways of one group derive the same ids (one stay, one id)

    def pseudonym(self, tag: str) -> str:
        """Keyed HMAC-SHA256 of the tag id: the backend, knowing the per-store secret, can match
        its registered users' beacons; nobody without the secret can reverse or link it."""
        if self.raw_ids:
            return tag
        return self.pseudonym_key(tag)

    def pseudonym_key(self, tag: str) -> str:
        """The pseudonym whatever `raw_ids` says: what the gateway keeps on disk for a tag."""
        return "p:" + hmac.new(self.secret, tag.encode(), hashlib.sha256).hexdigest()[:32]

    def event_id(self, kind: str, tag: str, zone: str | None, start: float, extra: str = "") -> str:
        """Deterministic id: the same dwell always gets the same id, even when re-derived."""
        scope = self.gateway if self.group is None else f"group:{self.group}"
        msg = f"{self.store}|{scope}|{kind}|{tag}|{zone}|{round(start * 1000)}|{extra}"
        digest = hmac.new(self.secret, msg.encode(), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(frozen=True, slots=True)
class WireEvent:
    """An event as the cloud gets it (DESIGN.md fields), before the outbox numbers it: wall
    times, the tag pseudonymised. `trigger` is the (tag key, offer id, wall time) an offer event
    carries, committed with it so a frequency cap holds across a crash."""

    type: str
    event_id: str
    store: str
    gateway: str
    tag: str
    zone: str
    start: float
    end: float
    clock_synced: bool
    offer_id: str | None = None
    catalogue_version: int | None = None
    trigger: tuple[str, str, float] | None = None

    @property
    def urgent(self) -> bool:
        """Shown to a shopper at once: committed and published without waiting."""
        return self.type == "offer_triggered"

    def body(self) -> dict[str, Any]:
        """The JSON object (without `seq`, which the outbox or the replay writer assigns)."""
        out: dict[str, Any] = {
            "schema": EVENT_SCHEMA,
            "event_id": self.event_id,
            "type": self.type,
            "store": self.store,
            "gateway": self.gateway,
            "tag": self.tag,
            "zone": self.zone,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration_s": round(self.end - self.start, 3),
            "clock_synced": self.clock_synced,
        }
        if self.offer_id is not None:
            out["offer_id"] = self.offer_id
            out["catalogue_version"] = self.catalogue_version
            out["payload_ref"] = f"{self.catalogue_version}/{self.offer_id}"
        return out


def dwell_event(ident: Identity, ev: DwellEvent, clock_synced: bool) -> WireEvent:
    return WireEvent(
        ev.kind,
        ident.event_id(ev.kind, ev.tag, ev.zone, ev.start),
        ident.store,
        ident.gateway,
        ident.pseudonym(ev.tag),
        ev.zone,
        ev.start,
        ev.end,
        clock_synced,
    )


def offer_event(
    ident: Identity, trig: Trigger, start: float, at: float, clock_synced: bool
) -> WireEvent:
    """`offer_triggered`: the stay (start) reached the offer's minimum at `at` (wall times)."""
    tag = ident.pseudonym(trig.tag)
    return WireEvent(
        "offer_triggered",
        ident.event_id("offer_triggered", trig.tag, trig.zone, start, trig.offer.id),
        ident.store,
        ident.gateway,
        tag,
        trig.zone,
        start,
        at,
        clock_synced,
        trig.offer.id,
        trig.catalogue_version,
        (tag, trig.offer.id, at),
    )
