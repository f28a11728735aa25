"""What `run` and `check` share: the effective configuration (file + command line), the layout,
the calibration and the data directory, validated the same way, so that whatever `check` calls
fine, `run` starts with, and a user mistake is one line and exit 2 in both."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from positioning.errors import InputError
from positioning.layout import Layout
from positioning.pathloss import RadioModel

from .cli.common import default_layout
from .config import ConfigError, GatewayConfig, SourceConfig, load_config
from .config.fields import Problems

# The installed example config (config/gateway.toml, /etc/shelfgate/gateway.toml) carries this
# in gateway.id and gateway.store: inert until an installer writes the real ids.
PLACEHOLDER = "CHANGE-ME"


@dataclass(frozen=True, slots=True)
class Setup:
    cfg: GatewayConfig
    layout_path: str
    sources: tuple[SourceConfig, ...]
    calibration: str | None


def effective_setup(a: argparse.Namespace) -> Setup:
    """Config file + command-line overrides (the command line wins), validated once."""
    cfg = load_config(a.config).with_overrides(
        broker=a.broker,
        data_dir=a.data_dir,
        store=a.store,
        gateway_id=a.gateway,
        sources=tuple(a.source) if a.source else None,
        web_listen=getattr(a, "web", None),
    )
    layout = a.layout or cfg.gateway.layout or default_layout()
    sources = cfg.sources
    if a.config is None and not sources:
        # no config file at all: the built-in defaults, a simulated store (a developer's run);
        # a config file never falls back to one (fake events under a real store's ids)
        sources = (SourceConfig(f"sim:{layout}"),)
    unedited = still_to_edit(cfg, sources)
    if unedited:
        raise ConfigError(cfg.path, unedited)
    return Setup(cfg, layout, sources, a.calibration or cfg.gateway.calibration)


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
