"""Receiver health of a networked-receiver source in plain words: which receivers of the layout
were heard, which were silent, which nodes are not in the layout, what was dropped and why.
`shelfgate check` listens for a few seconds and prints these lines."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .guard import ReceiverStats
from .source import NetworkSource

Finding = tuple[str, str]  # ("ok" | "warn" | "fail", what)
REASONS = ("malformed", "oversized", "rate_limited", "duplicate", "late", "future", "overflow")


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
    for rx, st in sorted(stats.items()):
        if st.dropped():
            out.append(("warn", f"source {src.name}: receiver {rx} dropped {_drops(st)}"))
    return out


def _drops(st: ReceiverStats) -> str:
    return ", ".join(f"{getattr(st, k)} {k.replace('_', '-')}" for k in REASONS if getattr(st, k))
