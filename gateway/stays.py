"""Ongoing stays across a restart (an upgrade, a watchdog restart, a power blip).

At every commit and at shutdown the pipeline's open stays are kept in the outbox database as
`SuspendedStay`s: wall times, the tag's pseudonym (no raw id on disk) and the event ids the stay
will end with. After a restart the stay waits for its tag: a tag whose pseudonym matches comes
back within the dwell gap and the stay goes on, from its first start (the offer at five minutes
still triggers; the cloud sees one dwell); a tag that does not come back ends its stay where it
was last seen, with the ids it would have had anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from positioning.dwell import OngoingStay

from .events import Identity, WireEvent


@dataclass(frozen=True, slots=True)
class SuspendedStay:
    key: str  # the tag's pseudonym
    zone: str
    start: float  # wall time
    last_in_zone: float  # wall time
    threshold_sent: bool
    dwell_id: str
    threshold_id: str


SAVE_RESOLUTION_S = 5.0  # a stay's last-seen time is re-saved when it moves by this much


def signature(stays: list[SuspendedStay]) -> set[tuple[object, ...]]:
    """What must be saved again when it changes: a tag heard every second does not rewrite the
    table every second (at most SAVE_RESOLUTION_S of its last-seen time is lost to a crash)."""
    return {
        (s.key, s.zone, s.start, s.threshold_sent, s.last_in_zone // SAVE_RESOLUTION_S)
        for s in stays
    }


def suspend(stay: OngoingStay, start_wall: float, offset: float, ident: Identity) -> SuspendedStay:
    return SuspendedStay(
        ident.pseudonym_key(stay.tag),
        stay.zone,
        start_wall,
        stay.last_in_zone + offset,
        stay.threshold_sent,
        ident.event_id("dwell", stay.tag, stay.zone, start_wall),
        ident.event_id("dwell_threshold", stay.tag, stay.zone, start_wall),
    )


def expired_events(
    s: SuspendedStay, ident: Identity, min_dwell_s: float, clock_synced: bool
) -> list[WireEvent]:
    """A kept stay whose tag did not come back within the gap: it ended where it was last seen."""
    if s.last_in_zone - s.start < min_dwell_s:
        return []
    out = []
    if not s.threshold_sent:
        out.append(
            WireEvent(
                "dwell_threshold",
                s.threshold_id,
                ident.store,
                ident.gateway,
                s.key,
                s.zone,
                s.start,
                s.start + min_dwell_s,
                clock_synced,
            )
        )
    out.append(
        WireEvent(
            "dwell",
            s.dwell_id,
            ident.store,
            ident.gateway,
            s.key,
            s.zone,
            s.start,
            s.last_in_zone,
            clock_synced,
        )
    )
    return out
