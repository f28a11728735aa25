"""Receiver health of networked receivers.

`ReceiverCounters` is the one typed view of a networked receiver's counters (a snapshot) that
the status message, the web app (`/api/v1/state`, `/metrics`) and `shelfgate check` read:
`receiver_counters(sources)` over every source that has them. `findings` says the same in plain
words: which receivers of the layout were heard, which were silent, which nodes are not in the
layout, what was dropped and why (`shelfgate check` listens a few seconds and prints them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .guard import ReceiverStats

if TYPE_CHECKING:
    from .source import NetworkSource

Finding = tuple[str, str]  # ("ok" | "warn" | "fail", what)
# why a networked receiver's message was not used (`shelfgate_receiver_dropped_total{reason}`)
REASONS = (
    "malformed", "oversized", "rate_limited", "duplicate", "late", "future", "overflow", "lost"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReceiverCounters:
    """One networked receiver's counters since the source started."""

    receiver: str
    source: str
    accepted: int  # messages admitted and decoded (late / future ones are dropped after this)
    dropped: Mapping[str, int]  # reason (REASONS, every one) -> messages dropped for it
    last_heard: float | None  # input clock (monotonic) of its last accepted message

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "accepted": self.accepted, "dropped": dict(self.dropped)}

    @staticmethod
    def of(receiver: str, source: str, st: ReceiverStats) -> ReceiverCounters:
        dropped = {k: getattr(st, k) for k in REASONS}
        return ReceiverCounters(receiver, source, st.accepted, dropped, st.last_heard)


class HasCounters(Protocol):
    def counters(self) -> list[ReceiverCounters]: ...


def receiver_counters(sources: Iterable[object]) -> list[ReceiverCounters]:
    """Every networked receiver of `sources` (the others have none), by receiver id."""
    out: list[ReceiverCounters] = []
    for src in sources:
        get = getattr(src, "counters", None)
        if get is not None:
            out += get()
    return sorted(out, key=lambda c: (c.receiver, c.source))


async def listen(src: NetworkSource, seconds: float) -> None:
    """Runs the source for `seconds` (its counters fill; what it yields is discarded)."""

    async def pump() -> None:
        async for _ in src.batches():
            pass

    task = asyncio.create_task(pump())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def findings(src: NetworkSource, seconds: float) -> list[Finding]:
    if not src.connected and not any(st.accepted for st in src.stats().values()):
        host = f"{src.settings.host}:{src.settings.port}"
        return [("fail", f"source {src.name}: no connection to the broker {host} (see the log)")]
    stats = src.stats()
    heard = {rx: st for rx, st in stats.items() if st.accepted}
    out: list[Finding] = []
    if heard:
        counts = ", ".join(f"{rx} {st.accepted}" for rx, st in sorted(heard.items()))
        out.append(
            (
                "ok",
                f"source {src.name}: {len(heard)} receiver(s) heard in {seconds:.0f} s ({counts})",
            )
        )
    silent = sorted(set(stats) - set(heard))
    if silent:
        out.append(("warn", f"source {src.name}: silent on {src.topic}: {', '.join(silent)}"))
    if src.guard.unknown:
        names = ", ".join(
            f"{rx} ({n} messages)" for rx, n in sorted(src.guard.unknown.items())[:10]
        )
        out.append(("warn", f"source {src.name}: nodes not in the layout (not used): {names}"))
    for c in src.counters():
        if c.dropped_total:
            out.append(("warn", f"source {src.name}: receiver {c.receiver} dropped {_drops(c)}"))
    return out


def _drops(c: ReceiverCounters) -> str:
    return ", ".join(f"{n} {k.replace('_', '-')}" for k, n in c.dropped.items() if n)
