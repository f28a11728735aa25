"""A configuration pushed on `.../config`: `{"schema": 1, "version": N, "config": {sections}}`,
merged over the file and validated exactly as the file is (gateway.config), plus the keys that
only the file may set. `changed_keys` and `HOT` decide between applying in place and a restart."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from gateway.config import GatewayConfig

from .state import Pushed

SCHEMA = 1
MAX_CONFIG_BYTES = 256 * 1024

# set only in the file: they decide who the gateway is, where its outbox lives, where it listens
# for this very topic, or privacy (the store's consent); secrets do not belong in a retained
# message (every subscriber with read access, and the broker's disk, would hold them)
FILE_ONLY = {
    "gateway.id": "the gateway's identity (its topics) is set in the file",
    "gateway.store": "the gateway's identity (its topics) is set in the file",
    "gateway.data_dir": "where the outbox lives is set in the file",
    "gateway.log_file": "where the gateway writes is set in the file",
    "mqtt.topic_prefix": "the topics (this one included) are set in the file",
    "mqtt.password": "no secrets in a retained message; use mqtt.password_file",
    "remote.enabled": "only the file can turn remote configuration off or on",
    "privacy": "privacy (the pseudonymisation key, raw ids) is the store's decision, in the file",
    "sources.password": "no secrets in a retained message; use password_file",
}

# applied in place, without a restart; any other change restarts the daemon cleanly
HOT = frozenset(
    {
        "pipeline.min_dwell_s",
        "pipeline.dwell_gap_s",
        "pipeline.classify_every_s",
        "pipeline.tag_expiry_s",
        "pipeline.max_tags",
        "gateway.log_level",
        "gateway.source_silence_s",
        "remote.confirm_s",
    }
)


class MessageError(Exception):
    def __init__(self, version: int | None, reason: str) -> None:
        super().__init__(reason)
        self.version = version
        self.reason = reason


def parse_message(payload: bytes) -> Pushed:
    if len(payload) > MAX_CONFIG_BYTES:
        raise MessageError(None, f"{len(payload)} bytes; at most {MAX_CONFIG_BYTES} are taken")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise MessageError(None, f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise MessageError(None, 'expected an object {"schema": 1, "version": N, "config": {...}}')
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise MessageError(None, f"version: expected an integer >= 1, got {version!r}")
    if obj.get("schema") != SCHEMA:
        raise MessageError(version, f"schema: expected {SCHEMA}, got {obj.get('schema')!r}")
    config = obj.get("config")
    if not isinstance(config, dict):
        raise MessageError(version, "config: expected an object of gateway.toml's sections")
    extra = sorted(set(obj) - {"schema", "version", "config"})
    if extra:
        raise MessageError(version, f"{extra[0]}: unknown key; expected schema, version, config")
    return Pushed(version, config)


def file_only_problems(config: dict[str, Any]) -> list[str]:
    """The pushed keys only the file may set, one line each naming the key."""
    out = []
    for section, body in config.items():
        if section in FILE_ONLY:
            out.append(f"{section}: {FILE_ONLY[section]}")
            continue
        if section == "sources" and isinstance(body, list):
            for i, item in enumerate(body):
                if isinstance(item, dict) and "password" in item:
                    out.append(f"sources[{i}].password: {FILE_ONLY['sources.password']}")
            continue
        if isinstance(body, dict):
            out += [f"{section}.{k}: {FILE_ONLY[f'{section}.{k}']}" for k in body
                    if f"{section}.{k}" in FILE_ONLY]  # fmt: skip
    return out


def merged(file_raw: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The pushed sections over the file's, key by key ([[sources]] as a whole): what the file
    sets and the push does not stays (a push never needs to repeat the local secrets' files)."""
    out = dict(file_raw)
    for section, body in config.items():
        base = out.get(section)
        if section != "sources" and isinstance(body, dict) and isinstance(base, dict):
            out[section] = {**base, **body}
        else:
            out[section] = body
    return out


def changed_keys(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """The dotted keys whose values differ (`sources` as one)."""
    out = []
    for f in dataclasses.fields(GatewayConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "path" or a == b:
            continue
        if dataclasses.is_dataclass(a):
            out += [f"{f.name}.{g.name}" for g in dataclasses.fields(a)
                    if getattr(a, g.name) != getattr(b, g.name)]  # fmt: skip
        else:
            out.append(f.name)
    return out
