"""Several positioning gateways in one store (`[gateway] group = "..."` on each): every gateway
of the group runs the whole pipeline on the same networked receivers, and exactly one of them,
the tag's owner, sends its events. No leader election: the owner is a pure function of the
tag's pseudonym and the set of the group's gateways that are online by their retained status
(the broker's last will says `online: false` when one dies), by rendezvous hashing: each
gateway computes the same owner from the same status messages, and when a gateway goes offline
only its own tags move (each to the gateway that ranks next for it).

Takeover is bounded by the last will: the broker sends it at once when a gateway's connection
closes (a crash, a kill -9: the kernel closes the socket), and 1.5 x the keepalive after a
gateway falls silent (a cable pulled). The standby already tracks every tag, so a stay goes on
with its first start; its `dwell` leaves from the new owner. Events the old owner decided but
may not have delivered (a `dwell_threshold`, an `offer_triggered` of a stay still open) are
sent again by the new owner at takeover: event ids are the group's (gateway.events.Identity),
so such a repeat has the same `event_id` and the backend's deduplication absorbs it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from gateway.events import WireEvent

log = logging.getLogger(__name__)

OPEN_STAY = ("dwell_threshold", "offer_triggered")  # events of a stay that is still going on


def rank(gateway: str, tag: str) -> bytes:
    return hashlib.sha256(f"{gateway}|{tag}".encode()).digest()


class Ownership:
    def __init__(self, me: str, group: str, status_prefix: str) -> None:
        self.me = me
        self.group = group
        self.prefix = status_prefix  # "<prefix>/<store>/": peers' status at <prefix><gw>/status
        self.online: set[str] = {me}
        self.suppressed = 0  # events another gateway of the group owns
        self.resent = 0  # events of open stays sent again at a takeover
        self._open: dict[str, dict[str, WireEvent]] = {}  # tag -> its open stays' events by id
        self.on_change: Callable[[set[str]], None] = lambda _: None

    def owner(self, tag: str, online: set[str] | None = None) -> str:
        return max(online or self.online, key=lambda g: rank(g, tag))

    def status(self) -> dict[str, Any]:
        """The status message's member: this gateway's group and who it sees online."""
        return {"group": {"name": self.group, "online": sorted(self.online)}}

    def filter(self, events: list[WireEvent]) -> list[WireEvent]:
        """The events this gateway sends: those of the tags it owns now."""
        out: list[WireEvent] = []
        for ev in events:
            if ev.type in OPEN_STAY:
                self._open.setdefault(ev.tag, {})[ev.event_id] = ev
            elif ev.type == "dwell":
                self._open.pop(ev.tag, None)
            if self.owner(ev.tag) == self.me:
                out.append(ev)
            else:
                self.suppressed += 1
        return out

    def on_status(self, topic: str, payload: bytes) -> list[WireEvent]:
        """A gateway's retained status (or last will): who is online changes; the events of
        the open stays of tags that became ours, to send again."""
        gw = topic[len(self.prefix) :].split("/", 1)[0]
        if gw == self.me or not topic.startswith(self.prefix):
            return []
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(body, dict):
            return []
        group = body.get("group")
        ours = isinstance(group, dict) and group.get("name") == self.group
        was = set(self.online)
        if body.get("online") is True and ours:
            self.online.add(gw)
        else:
            self.online.discard(gw)
        if self.online == was:
            return []
        log.info("group %s: online %s (was %s)", self.group, sorted(self.online), sorted(was))
        self.on_change(self.online)
        out: list[WireEvent] = []
        for tag, evs in self._open.items():
            if self.owner(tag, was) != self.me and self.owner(tag) == self.me:
                out += evs.values()
        self.resent += len(out)
        if out:
            log.info("group %s: took over %d open stay event(s)", self.group, len(out))
        return out
