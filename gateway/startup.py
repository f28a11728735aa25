"""What `run` and `check` share: the effective configuration (file + command line), the layout,
the calibration and the data directory, validated the same way, so that whatever `check` calls
fine, `run` starts with, and a user mistake is one line and exit 2 in both."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from positioning.errors import InputError
from positioning.layout import Layout
from positioning.pathloss import RadioModel

from .cli.common import default_layout
from .config import ConfigError, GatewayConfig, SourceConfig, config_from_dict, load_raw
from .config.fields import Problems
from .remote.message import file_only_problems, merged
from .remote.state import Pushed, RemoteState, load_state, save_state

log = logging.getLogger(__name__)

# The installed example config (config/gateway.toml, /etc/shelfgate/gateway.toml) carries this
# in gateway.id and gateway.store: inert until an installer writes the real ids.
PLACEHOLDER = "CHANGE-ME"


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line sets over the file (None: the file's value)."""

    broker: str | None = None
    data_dir: str | None = None
    store: str | None = None
    gateway_id: str | None = None
    sources: tuple[str, ...] | None = None
    web_listen: str | None = None

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> Overrides:
        return cls(
            broker=getattr(a, "broker", None),
            data_dir=getattr(a, "data_dir", None),
            store=getattr(a, "store", None),
            gateway_id=getattr(a, "gateway", None),
            sources=tuple(a.source) if getattr(a, "source", None) else None,
            web_listen=getattr(a, "web", None),
        )

    def apply(self, cfg: GatewayConfig) -> GatewayConfig:
        return cfg.with_overrides(
            broker=self.broker,
            data_dir=self.data_dir,
            store=self.store,
            gateway_id=self.gateway_id,
            sources=self.sources,
            web_listen=self.web_listen,
        )


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where the configuration comes from: the file, a pushed configuration merged over it, the
    command line over both. `build` validates the result exactly as a file is validated."""

    path: str | None
    overrides: Overrides

    def build(self, pushed: Pushed | None = None) -> GatewayConfig:
        raw: dict[str, Any] = {}
        text = ""
        if self.path is not None:
            raw, text = load_raw(self.path)
        base = Path(self.path).parent if self.path is not None else None
        if pushed is None:
            cfg = config_from_dict(raw, self.path or "<defaults>", text, base)
        else:
            src = f"remote config version {pushed.version}"
            lines = [f"{src}: {p}" for p in file_only_problems(pushed.config)]
            try:
                cfg = config_from_dict(merged(raw, pushed.config), src, "", base)
            except ConfigError as e:
                lines += e.lines
            if lines:
                raise ConfigError(src, lines)
        return self.overrides.apply(cfg)


@dataclass(frozen=True, slots=True)
class Setup:
    cfg: GatewayConfig
    layout_path: str
    sources: tuple[SourceConfig, ...]
    calibration: str | None
    source: ConfigSource
    remote: RemoteState


def effective_setup(a: argparse.Namespace, boot: bool = False, complete: bool = True) -> Setup:
    """Config file + the pushed configuration in force + command-line overrides (the command
    line wins over both), validated once. `boot` (the daemon starting): a configuration on trial
    counts a start, and one that did not survive its first start is rolled back."""
    source = ConfigSource(getattr(a, "config", None), Overrides.from_args(a))
    file_cfg = source.build()
    data_dir = file_cfg.gateway.data_dir
    remote = load_state(data_dir) if file_cfg.remote.enabled else RemoteState()
    if boot and file_cfg.remote.enabled:
        remote = boot_remote(data_dir, remote)
    cfg = file_cfg
    candidates = [remote.active(), *([remote.good] if remote.trial is not None else [])]
    for pushed in candidates:
        if pushed is None:
            break
        try:
            cfg = source.build(pushed)
            break
        except ConfigError as e:  # e.g. a file it names has gone: say so, fall back
            log.error("the pushed configuration no longer validates: %s", e)
            if not boot:
                break
            remote = remote.refused(pushed.version, str(e), _now())
            if pushed is remote.good:
                remote = dataclasses.replace(remote, good=None)
            save_state(data_dir, remote)
    layout = a.layout or cfg.gateway.layout or default_layout()
    sources = cfg.sources
    if getattr(a, "config", None) is None and not sources:
        # no config file at all: the built-in defaults, a simulated store (a developer's run);
        # a config file never falls back to one (fake events under a real store's ids)
        sources = (SourceConfig(f"sim:{layout}"),)
    unedited = still_to_edit(cfg, sources) if complete else []
    if unedited:  # (`complete=False`: `diagnose`, whose bundle carries check's words on it)
        raise ConfigError(cfg.path, unedited)
    calibration = applied_calibration(
        cfg.gateway.data_dir, a.calibration or cfg.gateway.calibration
    )
    return Setup(cfg, layout, sources, calibration, source, remote)


def boot_remote(data_dir: str, remote: RemoteState) -> RemoteState:
    """A start with a configuration on trial: the first counts; a second means the first start
    with it never reached the broker (it died): back to the last good."""
    t = remote.trial
    if t is None:
        return remote
    if t.boots >= 1:
        log.error(
            "remote config version %d: the gateway did not reach the broker with it before it "
            "stopped; rolled back to %s",
            t.pushed.version,
            f"version {remote.good.version}" if remote.good else "the file's configuration",
        )
        remote = remote.refused(
            t.pushed.version, "the gateway stopped before it reached the broker with it", _now()
        )
    else:
        remote = dataclasses.replace(remote, trial=dataclasses.replace(t, boots=t.boots + 1))
    save_state(data_dir, remote)
    return remote


def _now() -> float:
    from .clock import Clock

    return Clock().wall()


APPLIED_CALIBRATION = "calibration.json"  # in the data dir: what the web app's wizard applied


def applied_calibration(data_dir: str, configured: str | None) -> str | None:
    """The calibration to start with: the one the web app's wizard last applied
    (`<data_dir>/calibration.json`), unless the configured file is newer (an installer put a
    new calibration in place since) or missing (its error is then reported)."""
    applied = Path(data_dir) / APPLIED_CALIBRATION
    try:
        applied_at = applied.stat().st_mtime
    except OSError:
        return configured
    if configured is None:
        return str(applied)
    try:
        if Path(configured).stat().st_mtime > applied_at:
            return configured
    except OSError:
        return configured
    return str(applied)


def still_to_edit(cfg: GatewayConfig, sources: tuple[SourceConfig, ...]) -> list[str]:
    """What an installer has not filled in yet (placeholder ids, no source), one line each with
    the file's line; empty when the configuration is complete."""
    try:
        text = Path(cfg.path).read_text(encoding="utf-8")
    except OSError:
        text = ""  # the built-in defaults, or a file gone since it was read: no line numbers
    problems = Problems(cfg.path, text)
    for key, value, what in (
        ("gateway.id", cfg.gateway.id, 'this gateway\'s id, unique in the store (e.g. "gw-01")'),
        ("gateway.store", cfg.gateway.store, 'the store\'s id (e.g. "hb-kiel")'),
    ):
        if value is not None and value.strip().upper() == PLACEHOLDER:
            problems.add(key, f'still the placeholder "{value}": write {what}')
    if not sources:
        problems.add(
            "",
            "no [[sources]]: nothing to listen to; add the store's receivers (the commented "
            '[[sources]] examples, e.g. uri = "bluez:hci0?rx=rx01") or pass --source',
        )
    return problems.lines()


def load_model(path: str | None) -> RadioModel | None:
    from .assembly import load_calibration

    return load_calibration(path) if path else None


def load_store_layout(path: str) -> Layout:
    from .layoutfile import load_layout

    return load_layout(path)


def data_dir_problem(data_dir: str) -> str | None:
    """Why the data dir cannot hold the outbox (without changing anything), or None."""
    p = Path(data_dir)
    if p.exists() and not p.is_dir():
        return "is a file; expected a directory for the outbox"
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == p else f"cannot be created ({probe} is not writable)"
        return f"{what} by this user (the outbox lives there)"
    return None


def prepare_data_dir(data_dir: str) -> Path:
    """The data dir, made private (0700) if missing; a clear error when it cannot hold the
    outbox (a file in its place, no write permission), the same `check` reports."""
    problem = data_dir_problem(data_dir)
    if problem is not None:
        raise InputError(data_dir, "gateway.data_dir", problem)
    p = Path(data_dir)
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    return p
