"""The offer catalogue: pushed (retained) by the backend on `<prefix>/<store>/offers`, validated
off the event loop, newer versions only, the last good one kept in the outbox database so
offers work offline and after a restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.clock import Clock
from gateway.events import Identity
from gateway.pipeline import Pipeline
from positioning.offers import Catalogue, CatalogueError, OfferMatcher, parse_catalogue

from .store import OutboxWorker

log = logging.getLogger(__name__)

HISTORY_S = 8 * 86400.0  # offer triggers older than any frequency period are forgotten
MAX_CATALOGUE_BYTES = 16 * 1024 * 1024  # 100k offers of a few hundred bytes each fit


def _parse(payload: bytes, zones: tuple[str, ...]) -> Catalogue:
    if len(payload) > MAX_CATALOGUE_BYTES:
        raise CatalogueError(
            "$",
            f"{len(payload) / 1e6:.1f} MB; at most {MAX_CATALOGUE_BYTES / 1e6:.0f} MB are taken",
        )
    return parse_catalogue(orjson.loads(payload), zones)


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
        except (CatalogueError, orjson.JSONDecodeError) as e:
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
        except (orjson.JSONDecodeError, CatalogueError) as e:
            await self._reject(payload, e)
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
        m = await asyncio.get_running_loop().run_in_executor(
            None, OfferMatcher, cat, self._tz, history, self._ident.pseudonym
        )
        if p.matcher is not None:
            m.take_over(p.matcher)
        p.matcher = m
        self.version = cat.version

    async def _reject(self, payload: bytes, e: Exception) -> None:
        version: Any = None
        try:
            obj = orjson.loads(payload)
            version = obj.get("version") if isinstance(obj, dict) else None
        except orjson.JSONDecodeError:
            pass
        reason = f"not JSON: {e}" if isinstance(e, orjson.JSONDecodeError) else str(e)
        log.error(
            "offer catalogue version %s rejected: %s (keeping version %s)",
            version,
            reason,
            self.version,
        )
        self.rejected = {"version": version, "reason": reason, "time": round(self._clock.wall(), 3)}
        await self._on_change()
