"""What a networked receiver may cost us: per receiver, counted. Runs on the MQTT network thread
(sans-IO: the caller passes the time), before any JSON is parsed, so a flood is dropped for the
price of a dictionary lookup and a little arithmetic.

Per receiver id (the topic level): messages larger than `max_bytes` are dropped as oversized;
more than `rate` messages/s (a token bucket holding `burst`) as rate-limited; a message equal to
the one just before it from the same receiver within `dedupe_s`, or flagged DUP by the broker,
as a duplicate. A receiver id that is not in the layout is reported once (log + counter), never
per message, and at most `MAX_UNKNOWN` distinct ids are remembered (a node inventing topics
cannot grow memory).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

log = logging.getLogger(__name__)

MAX_UNKNOWN = 256
LOG_UNKNOWN = 10  # strangers named in the log; the rest are counted
OTHER = "<other>"


@dataclass(slots=True)
class ReceiverStats:
    """Counters of one receiver. Each is written by one thread only: `late` and `overflow` on
    the event loop (`late`, `future` too), the rest on the network thread."""

    accepted: int = 0
    malformed: int = 0
    oversized: int = 0
    rate_limited: int = 0
    duplicate: int = 0
    late: int = 0
    future: int = 0  # clock=receiver: a timestamp further ahead than max_late_s (a wrong clock)
    lost: int = 0  # shelfgate nodes: batches that never came (gaps in the node's seq)
    overflow: int = 0
    last_heard: float | None = None  # arrival (monotonic) of its last accepted message

    def dropped(self) -> int:
        return (
            self.malformed
            + self.oversized
            + self.rate_limited
            + self.duplicate
            + self.late
            + self.future
            + self.lost
            + self.overflow
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    t: float
    last_payload: bytes = b""
    last_t: float = float("-inf")
    limited: bool = False  # in a rate-limited episode (logged once per episode)


class ReceiverGuard:
    def __init__(
        self,
        source: str,
        known: tuple[str, ...],
        max_bytes: int = 4096,
        rate: float = 1000.0,
        burst: float = 2000.0,
        dedupe_s: float = 0.05,
    ) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.rate = rate
        self.burst = burst
        self.dedupe_s = dedupe_s
        self.stats: dict[str, ReceiverStats] = {rx: ReceiverStats() for rx in known}
        self.unknown: dict[str, int] = {}  # receiver id not in the layout -> messages
        self._buckets: dict[str, _Bucket] = {}
        self._malformed_logged: set[str] = set()
        self.taken: dict[str, str] = {}  # receiver id -> the local radio that feeds it
        self.shadowed: dict[str, int] = {}  # its networked messages, not used (counted)

    def exclude(self, fed: dict[str, str]) -> None:
        """Receivers a local radio feeds: a node publishing under the same id would count every
        advertisement twice, so its messages are reported once and counted, not used."""
        self.taken = {rx: by for rx, by in fed.items() if rx in self.stats}

    def admit(self, rx: str, payload: bytes, now: float, dup: bool = False) -> ReceiverStats | None:
        """The receiver's counters if its message may be decoded, else None (counted)."""
        st = self.usable(rx)
        if st is None:
            return None
        if len(payload) > self.max_bytes:
            st.oversized += 1
            return None
        b = self._buckets.get(rx)
        if b is None:
            b = self._buckets[rx] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.t) * self.rate)
        b.t = now
        if b.tokens < 1.0:
            st.rate_limited += 1
            if not b.limited:
                b.limited = True
                log.warning(
                    "%s: receiver %s sends more than %.0f messages/s: rate-limited",
                    self.source,
                    rx,
                    self.rate,
                )
            return None
        b.tokens -= 1.0
        if b.limited and b.tokens >= self.burst / 2:
            b.limited = False
        if dup or (payload == b.last_payload and now - b.last_t < self.dedupe_s):
            st.duplicate += 1
            return None
        b.last_payload, b.last_t = payload, now
        return st

    def usable(self, rx: str) -> ReceiverStats | None:
        """The counters of a receiver of the layout that no local radio feeds, else None: a
        stranger (reported once) or a shadowed receiver (counted)."""
        st = self.stats.get(rx)
        if st is None:
            self._unknown(rx)
            return None
        if rx in self.taken:
            n = self.shadowed.get(rx, 0)
            self.shadowed[rx] = n + 1
            if n == 0:
                log.warning(
                    "%s: receiver %s is fed by %s already: its networked messages are not used",
                    self.source,
                    rx,
                    self.taken[rx],
                )
            return None
        return st

    def malformed(self, rx: str, st: ReceiverStats, reason: str) -> None:
        st.malformed += 1
        if rx not in self._malformed_logged:  # the first one per receiver; then counted only
            self._malformed_logged.add(rx)
            log.warning("%s: receiver %s sent a malformed message (%s)", self.source, rx, reason)

    def _unknown(self, rx: str) -> None:
        n = self.unknown.get(rx)
        if n is not None:
            self.unknown[rx] = n + 1
            return
        if len(self.unknown) >= MAX_UNKNOWN:
            self.unknown[OTHER] = self.unknown.get(OTHER, 0) + 1
            return
        self.unknown[rx] = 1
        if len(self.unknown) > LOG_UNKNOWN:
            if len(self.unknown) == LOG_UNKNOWN + 1:
                log.warning("%s: more receivers not in the layout (counted)", self.source)
            return
        log.warning(
            "%s: receiver %r is not in the layout: its messages are not used "
            "(name the node after a receiver id of the layout, or add it there)",
            self.source,
            rx[:64],
        )
