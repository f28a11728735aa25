"""Configuration pushed on `<prefix>/<store>/<gateway>/config` (retained, QoS 1), and `reload`.

A higher version than any taken or rejected is validated exactly like the file (on a worker
thread), then:
- nothing but hot keys changed (pipeline thresholds, log level, ...): applied in place, kept as
  the last good at once;
- anything else ([mqtt], [[sources]], [web], ...): kept as *on trial* and the daemon restarts
  cleanly (flushes, re-executes itself). On trial, it must reach the broker within
  `remote.confirm_s` ("commit confirmed"); then it becomes the last good; else it is rejected
  and the daemon restarts on the last good.
A rejected configuration leaves the running one untouched; the status message says why
(`"config": {"version", "rejected": {"version", "reason"}}`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.clock import Clock
from gateway.config import GatewayConfig
from gateway.remote.message import HOT, MessageError, changed_keys, parse_message
from gateway.remote.state import Pushed, RemoteState, Trial, save_state
from gateway.startup import ConfigSource
from positioning.errors import InputError

log = logging.getLogger(__name__)


class RemoteConfigService:
    def __init__(
        self,
        state: RemoteState,
        source: ConfigSource,
        data_dir: str,
        current: Callable[[], GatewayConfig],
        apply_hot: Callable[[GatewayConfig], None],
        restart: Callable[[str], None],
        on_change: Callable[[], Awaitable[None]],
        last_error: Callable[[], str | None],
        clock: Clock,
    ) -> None:
        self.state = state
        self._source = source
        self._data_dir = data_dir
        self._current = current
        self._apply_hot = apply_hot
        self._restart = restart
        self._on_change = on_change
        self._last_error = last_error
        self._clock = clock
        self._confirmed = asyncio.Event()
        self._lock = asyncio.Lock()  # one configuration at a time

    def report(self) -> dict[str, Any]:
        return self.state.report()

    # ------------------------------------------------------------------ commit confirmed
    def on_connected(self) -> None:
        """The broker is reachable: a configuration on trial is confirmed."""
        if self.state.trial is not None and not self._confirmed.is_set():
            self._confirmed.set()

    async def run(self) -> None:
        """While a configuration is on trial: confirm it, or roll it back after the deadline.
        Then idle until cancelled (a service's task ending would stop the daemon)."""
        await self._trial()
        await asyncio.Event().wait()

    async def _trial(self) -> None:
        trial = self.state.trial
        if trial is None:
            return
        log.info(
            "remote config version %d on trial: the broker must be reached within %.0f s",
            trial.pushed.version,
            trial.confirm_s,
        )
        try:
            async with asyncio.timeout(trial.confirm_s):
                await self._confirmed.wait()
        except TimeoutError:
            err = self._last_error()
            reason = (
                f"the broker was not reached within {trial.confirm_s:.0f} s with it"
                + (f" ({err})" if err else "")
                + "; rolled back to "
                + (f"version {self.state.good.version}" if self.state.good else "the file")
            )
            log.error("remote config version %d rejected: %s", trial.pushed.version, reason)
            await self._save(self.state.refused(trial.pushed.version, reason, self._clock.wall()))
            self._restart(f"rolling back remote config version {trial.pushed.version}")
            return
        await self._save(self.state.taken(trial.pushed))
        log.info("remote config version %d confirmed: kept as the last good", trial.pushed.version)
        await self._on_change()

    # ------------------------------------------------------------------ pushed
    async def on_message(self, payload: bytes) -> None:
        if not payload:
            log.info("the retained configuration was cleared on the broker: keeping this one")
            return
        async with self._lock:
            try:
                pushed = parse_message(payload)
            except MessageError as e:
                if e.version is not None and e.version <= self.state.highest:
                    return
                await self._reject(e.version, e.reason)
                return
            if pushed.version <= self.state.highest:
                log.info("remote config version %d ignored (seen %d)", pushed.version,
                          self.state.highest)  # fmt: skip
                return
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, self._source.build, pushed)
            except InputError as e:
                await self._reject(pushed.version, "; ".join(str(e).splitlines()))
                return
            await self._take(pushed, new)

    async def reload(self) -> dict[str, Any]:
        """The `reload` command: the file re-read (with the pushed configuration in force over
        it), applied like a push. Raises InputError with the file's problems."""
        async with self._lock:
            active = self.state.active()
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(None, self._source.build, active)
            return await self._apply(new, active)

    async def _take(self, pushed: Pushed, new: GatewayConfig) -> None:
        result = await self._apply(new, pushed)
        log.info("remote config version %d taken: %s", pushed.version, result)

    async def _apply(self, new: GatewayConfig, pushed: Pushed | None) -> dict[str, Any]:
        keys = changed_keys(self._current(), new)
        restart = [k for k in keys if k not in HOT]
        if not restart:
            self._apply_hot(new)
            if pushed is not None:
                await self._save(self.state.taken(pushed))
            await self._on_change()
            return {"applied": "hot" if keys else "unchanged", "changed": keys}
        if pushed is not None and pushed is not self.state.active():
            confirm_s = self._current().remote.confirm_s
            await self._save(self.state.trying(Trial(pushed, confirm_s)))
        self._restart(f"configuration changed ({', '.join(restart)})")
        return {"applied": "restart", "changed": keys}

    async def _reject(self, version: int | None, reason: str) -> None:
        active = self.state.active()
        log.error(
            "remote config version %s rejected: %s (keeping %s)",
            version,
            reason,
            f"version {active.version}" if active else "the file's configuration",
        )
        await self._save(self.state.refused(version, reason, self._clock.wall()))
        await self._on_change()

    async def _save(self, st: RemoteState) -> None:
        self.state = st
        await asyncio.get_running_loop().run_in_executor(None, save_state, self._data_dir, st)
