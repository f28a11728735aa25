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

    def pseudonym(self, tag: str) -> str:
        """Keyed HMAC-SHA256 of the tag id: the backend, knowing the per-store secret, can match
        its registered users' beacons; nobody without the secret can reverse or link it."""
        if self.raw_ids:
            return tag
        return "p:" + hmac.new(self.secret, tag.encode(), hashlib.sha256).hexdigest()[:32]

    def event_id(self, kind: str, tag: str, zone: str | None, start: float, extra: str = "") -> str:
        """Deterministic id: the same dwell always gets the same id, even when re-derived."""
        msg = f"{self.store}|{self.gateway}|{kind}|{tag}|{zone}|{round(start * 1000)}|{extra}"
        digest = hmac.new(self.secret, msg.encode(), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))


def dwell_event_body(ident: Identity, ev: DwellEvent, clock_synced: bool) -> dict[str, Any]:
    """The event without `seq` (assigned when it is committed to the outbox or written)."""
    return {
        "schema": EVENT_SCHEMA,
        "event_id": ident.event_id(ev.kind, ev.tag, ev.zone, ev.start),
        "type": ev.kind,
        "store": ident.store,
        "gateway": ident.gateway,
        "tag": ident.pseudonym(ev.tag),
        "zone": ev.zone,
        "start": round(ev.start, 3),
        "end": round(ev.end, 3),
        "duration_s": round(ev.end - ev.start, 3),
        "clock_synced": clock_synced,
    }


def offer_event_body(
    ident: Identity, trig: Trigger, start: float, at: float, clock_synced: bool
) -> dict[str, Any]:
    """`offer_triggered`: the stay (start) reached the offer's minimum at `at` (wall times)."""
    return {
        "schema": EVENT_SCHEMA,
        "event_id": ident.event_id("offer_triggered", trig.tag, trig.zone, start, trig.offer.id),
        "type": "offer_triggered",
        "store": ident.store,
        "gateway": ident.gateway,
        "tag": ident.pseudonym(trig.tag),
        "zone": trig.zone,
        "start": round(start, 3),
        "end": round(at, 3),
        "duration_s": round(at - start, 3),
        "clock_synced": clock_synced,
        "offer_id": trig.offer.id,
        "catalogue_version": trig.catalogue_version,
        "payload_ref": f"{trig.catalogue_version}/{trig.offer.id}",
    }
