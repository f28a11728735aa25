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
from .config import GatewayConfig, SourceConfig, load_config


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
    sources = cfg.sources or (SourceConfig(f"sim:{layout}"),)
    calibration = applied_calibration(
        cfg.gateway.data_dir, a.calibration or cfg.gateway.calibration
    )
    return Setup(cfg, layout, sources, calibration)


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
