"""The offer catalogue: pushed (retained) by the backend on `<prefix>/<store>/offers`, validated
off the event loop, newer versions only, the last good one kept in the outbox database so
offers work offline and after a restart."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gateway.clock import Clock
from gateway.events import Identity
from gateway.pipeline import Pipeline
from positioning.offers import Catalogue, CatalogueError, OfferMatcher, parse_catalogue

from . import catalogue_json
from .store import OutboxWorker

log = logging.getLogger(__name__)

HISTORY_S = 8 * 86400.0  # offer triggers older than any frequency period are forgotten
MAX_CATALOGUE_BYTES = 16 * 1024 * 1024  # 100k offers of a few hundred bytes each fit


class Rejected(Exception):
    """A catalogue not taken: its version (if it could be read) and the reason, in words."""

    def __init__(self, version: Any, reason: str) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason


_paused = 0
_paused_lock = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a catalogue is built on a worker thread, and what
    was built frozen (never rescanned) when it is switched back on. A 100k-offer catalogue is
    ~10^6 objects: with the collector on, each full collection during the build walks all of
    them while holding the interpreter lock (30-100 ms here: a stall of the event loop), and
    every later full collection would walk them again. Freezing is O(1); a catalogue makes no
    reference cycles, and replaced ones are freed by reference counting as usual."""
    global _paused
    with _paused_lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0:
                gc.freeze()
                gc.enable()


def _parse(payload: bytes, zones: tuple[str, ...]) -> Catalogue:
    """Runs on a worker thread; raises `Rejected`."""
    if len(payload) > MAX_CATALOGUE_BYTES:
        raise Rejected(
            None,
            f"$: {len(payload) / 1e6:.1f} MB; at most {MAX_CATALOGUE_BYTES / 1e6:.0f} MB are taken",
        )
    with _collector_paused():
        try:
            obj = catalogue_json.loads(payload)
        except json.JSONDecodeError as e:
            raise Rejected(None, f"not JSON: {e}") from None
        try:
            return parse_catalogue(obj, zones)
        except CatalogueError as e:
            version = obj.get("version") if isinstance(obj, dict) else None
            raise Rejected(version, str(e)) from None


def _matcher(
    cat: Catalogue,
    tz: str,
    history: list[tuple[str, str, float]],
    key: Callable[[str], str],
) -> OfferMatcher:
    with _collector_paused():
        return OfferMatcher(cat, tz, history, key)


def _release(holder: list[OfferMatcher | None]) -> None:
    """Drops the last reference to a replaced matcher on a worker thread: freeing 100k offers
    takes tens of milliseconds that the event loop should not spend."""
    holder.clear()


class CatalogueService:
    def __init__(
        self,
        store: OutboxWorker,
        pipeline: Pipeline,
        zones: tuple[str, ...],
        timezone: str,
        identity: Identity,
        clock: Clock,
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._zones = zones
        self._tz = timezone
        self._ident = identity
        self._clock = clock
        self._on_change = on_change
        self.version: int | None = None
        self.rejected: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        return {"version": self.version, "rejected": self.rejected}

    async def load_cached(self) -> None:
        cached = await self._store.do(lambda o: o.load_catalogue())
        if cached is None:
            return
        try:
            cat = await asyncio.get_running_loop().run_in_executor(
                None, _parse, cached[1], self._zones
            )
        except Rejected as e:
            log.error("the cached offer catalogue is unusable (%s); waiting for a new one", e)
            return
        await self._activate(cat)
        log.info(
            "offer catalogue version %d from the local cache: %d offers",
            cat.version,
            len(cat.offers),
        )

    async def on_message(self, payload: bytes) -> None:
        """A catalogue pushed on .../offers: parsed and validated on a worker thread (a large
        catalogue must not stall intake, publishing or the watchdog)."""
        try:
            cat = await asyncio.get_running_loop().run_in_executor(
                None, _parse, payload, self._zones
            )
        except Rejected as e:
            await self._reject(e)
            return
        if self.version is not None and cat.version <= self.version:
            log.info(
                "offer catalogue version %d ignored: version %d is active",
                cat.version,
                self.version,
            )
            return
        await self._store.do(lambda o: o.save_catalogue(cat.version, payload))
        await self._activate(cat)
        self.rejected = None  # a newer good catalogue clears an older rejection
        log.info("offer catalogue version %d active: %d offers", cat.version, len(cat.offers))
        await self._on_change()

    def forget_old_triggers(self) -> None:
        if self._pipeline.matcher is not None:
            self._pipeline.matcher.forget_before(self._clock.wall() - HISTORY_S)

    async def _activate(self, cat: Catalogue) -> None:
        """The new catalogue's matcher (its index: seconds for 100k offers on a Pi) is built on
        a worker thread; only taking over the old one's state runs on the loop."""
        p = self._pipeline
        history: list[tuple[str, str, float]] = []
        if p.matcher is None:
            since = self._clock.wall() - HISTORY_S
            history = await self._store.do(lambda o: o.trigger_history(since))
        loop = asyncio.get_running_loop()
        m = await loop.run_in_executor(
            None, _matcher, cat, self._tz, history, self._ident.pseudonym
        )
        old: list[OfferMatcher | None] = [p.matcher]
        if p.matcher is not None:
            m.take_over(p.matcher)
        p.matcher = m
        self.version = cat.version
        await loop.run_in_executor(None, _release, old)

    async def _reject(self, e: Rejected) -> None:
        log.error(
            "offer catalogue version %s rejected: %s (keeping version %s)",
            e.version,
            e.reason,
            self.version,
        )
        self.rejected = {
            "version": e.version,
            "reason": e.reason,
            "time": round(self._clock.wall(), 3),
        }
        await self._on_change()
