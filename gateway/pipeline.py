"""Building the pipeline (tracker, identity) from layout, calibration and config."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

from positioning.classifier import ClassifierParams
from positioning.dwell import DwellParams
from positioning.errors import InputError
from positioning.kalman import KalmanParams
from positioning.layout import Layout
from positioning.pathloss import RadioModel
from positioning.tracker import TrackerParams, ZoneTracker

from .config import Config, read_secret
from .events import Identity

log = logging.getLogger(__name__)


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


def tracker_params(cfg: Config, min_dwell_s: float | None = None) -> TrackerParams:
    p = cfg.values["pipeline"]
    return TrackerParams(
        kalman=KalmanParams(),
        classifier=ClassifierParams(),
        dwell=DwellParams(
            min_dwell_s=float(min_dwell_s if min_dwell_s is not None else p["min_dwell_s"]),
            gap_s=float(p["dwell_gap_s"]),
        ),
        classify_every_s=float(p["classify_every_s"]),
        tag_expiry_s=float(p["tag_expiry_s"]),
        max_tags=int(p["max_tags"]),
    )


def build_tracker(
    layout: Layout,
    cfg: Config,
    model: RadioModel | None,
    min_dwell_s: float | None = None,
    record_segments: bool = False,
    method: str = "model",
) -> ZoneTracker:
    return ZoneTracker(layout, model, tracker_params(cfg, min_dwell_s), record_segments, method)


def build_identity(cfg: Config, layout: Layout, raw_ids: bool = False) -> Identity:
    secret = read_secret(cfg)
    if secret is None:
        secret = secrets.token_bytes(32)
        if not (raw_ids or cfg.values["privacy"]["raw_ids"]):
            log.warning(
                "no privacy.secret configured: tags are pseudonymised with a random key for this run "
                "only (the backend cannot match them); set privacy.secret in gateway.toml"
            )
    store = cfg.values["gateway"]["store"] or layout.store_id
    return Identity(
        store,
        cfg.values["gateway"]["id"],
        secret,
        raw_ids or bool(cfg.values["privacy"]["raw_ids"]),
    )


def registered_tags(cfg: Config) -> dict[str, str]:
    return {
        str(a).upper(): f"mac:{str(a).upper()}"
        for a in cfg.values["pipeline"]["registered_addresses"]
    }
