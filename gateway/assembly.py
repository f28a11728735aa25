"""Building the pipeline (tracker, tag resolver, identity) from layout, calibration and config.

The pipeline's modules (tracker, classifier, ...) are imported where the pipeline is built, not
with this module: `replay` loads the calibration and the identity first, starts its trace
parsers, and imports them while the parsers read the first blocks."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from positioning.errors import InputError
from positioning.layout import Layout
from positioning.pathloss import RadioModel
from positioning.tags import TagResolver

from .config import GatewayConfig
from .events import Identity

if TYPE_CHECKING:
    from positioning.tracker import TrackerParams

    from .clock import Clock
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

KEY_FILE = "pseudonym.key"


def load_calibration(path: str | Path) -> RadioModel:
    src = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            src, "", "calibration file not found (make one with `shelfgate calibrate`)"
        ) from None
    except json.JSONDecodeError as e:
        raise InputError(src, f"line {e.lineno}", f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("radio_model"), dict):
        raise InputError(src, "radio_model", "expected the object written by `shelfgate calibrate`")
    try:
        return RadioModel.from_json(obj["radio_model"])
    except (TypeError, ValueError) as e:
        raise InputError(src, "radio_model", f"malformed ({e})") from None


def tracker_params(cfg: GatewayConfig, min_dwell_s: float | None = None) -> TrackerParams:
    from positioning.classifier import ClassifierParams
    from positioning.dwell import DwellParams
    from positioning.kalman import KalmanParams
    from positioning.tracker import TrackerParams

    p = cfg.pipeline
    return TrackerParams(
        kalman=KalmanParams(),
        classifier=ClassifierParams(),
        dwell=DwellParams(
            min_dwell_s=float(min_dwell_s if min_dwell_s is not None else p.min_dwell_s),
            gap_s=p.dwell_gap_s,
        ),
        classify_every_s=p.classify_every_s,
        tag_expiry_s=p.tag_expiry_s,
        max_tags=p.max_tags,
    )


def stored_key(data_dir: Path) -> bytes:
    """The gateway's own pseudonymisation key, made once and kept in the data dir (0600), so
    pseudonyms and event ids stay the same across restarts when no store secret is configured."""
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    log.warning(
        "no privacy.secret configured: made a gateway key in %s (pseudonyms stay stable, but "
        "the backend can only match them with this key; set privacy.secret_file for the store's)",
        path,
    )
    return key


def build_identity(
    cfg: GatewayConfig, layout: Layout, raw_ids: bool = False, key_dir: Path | None = None
) -> Identity:
    """The store, gateway and pseudonymisation key. Without a configured secret: the key kept in
    `key_dir` (the daemon's data dir), or a random key for this run only (replay)."""
    secret = cfg.privacy.read_secret()
    raw = raw_ids or cfg.privacy.raw_ids
    if secret is None and key_dir is not None:
        secret = stored_key(key_dir)
    if secret is None:
        secret = secrets.token_bytes(32)
        if not raw:
            log.warning(
                "no privacy.secret configured: tags are pseudonymised with a random key for this "
                "run only (the backend cannot match them); set privacy.secret in gateway.toml"
            )
    store = cfg.gateway.store or layout.store_id
    return Identity(store, cfg.gateway.id, secret, raw, cfg.gateway.group)


def build_pipeline(
    cfg: GatewayConfig,
    layout: Layout,
    model: RadioModel | None,
    *,
    clock: Clock | None = None,
    identity: Identity | None = None,
    min_dwell_s: float | None = None,
    record_segments: bool = False,
    method: str = "model",
    resolver: TagResolver | None = None,
) -> Pipeline:
    """`resolver`: one made already by `build_resolver` (replay's parsers resolve with it)."""
    from positioning.tracker import ZoneTracker

    from .pipeline import Pipeline

    tracker = ZoneTracker(layout, model, tracker_params(cfg, min_dwell_s), record_segments, method)
    resolver = build_resolver(cfg) if resolver is None else resolver
    return Pipeline(tracker, resolver, identity or build_identity(cfg, layout), clock)


def build_resolver(cfg: GatewayConfig) -> TagResolver:
    return TagResolver(cfg.pipeline.registered_addresses)
