"""gateway.toml: loaded once, validated against SPEC, frozen.

Every problem is one line naming the file, the key and what was expected. Unknown keys are
errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from positioning.errors import InputError

# section -> key -> (type(s), default, what is expected)
SPEC: dict[str, dict[str, tuple[tuple[type, ...], Any, str]]] = {
    "gateway": {
        "id": ((str,), "gw-01", "the gateway's id, unique in the store"),
        "store": ((str,), None, "the store id (default: the layout's store.id)"),
        "layout": ((str,), None, "path to the store layout TOML"),
        "calibration": ((str,), None, "path to a calibration JSON from `shelfgate calibrate`"),
        "data_dir": ((str,), "/var/lib/shelfgate", "directory for the outbox database"),
        "log_level": ((str,), "info", "one of debug, info, warning, error"),
    },
    "pipeline": {
        "min_dwell_s": ((int, float), 60.0, "seconds a stay must last to be a dwell"),
        "dwell_gap_s": ((int, float), 20.0, "seconds away from a zone that do not end a dwell"),
        "classify_every_s": ((int, float), 1.0, "seconds between zone decisions per tag"),
        "tag_expiry_s": ((int, float), 120.0, "seconds unheard after which a tag is forgotten"),
        "max_tags": ((int,), 5000, "most tags tracked at once"),
        "registered_addresses": ((list,), [], "addresses of store tags without a beacon frame"),
    },
    "privacy": {
        "secret": ((str,), None, "per-store pseudonymisation key (at least 16 characters)"),
        "secret_file": ((str,), None, "file holding the per-store pseudonymisation key"),
        "raw_ids": ((bool,), False, "true sends raw tag ids (only with the store's consent)"),
    },
    "mqtt": {
        "broker": ((str,), "mqtt://127.0.0.1:1883", "mqtt://host:port or mqtts://host:port"),
        "client_id": ((str,), None, "MQTT client id (default shelfgate-<store>-<gateway>)"),
        "protocol": ((str,), "5", '"5" (MQTT v5) or "3.1.1"'),
        "username": ((str,), None, "user name"),
        "password": ((str,), None, "password"),
        "password_file": ((str,), None, "file holding the password"),
        "ca_file": ((str,), None, "CA certificate file to verify the broker (default: system CAs)"),
        "cert_file": ((str,), None, "client certificate (PEM) for mutual TLS"),
        "key_file": ((str,), None, "client private key (PEM) for mutual TLS"),
        "allow_plaintext": ((bool,), False, "allow mqtt:// to a host other than loopback"),
        "keepalive_s": ((int,), 60, "keepalive seconds"),
        "topic_prefix": ((str,), "shelfgate/v1", "topic prefix"),
        "max_batch": ((int,), 100, "events per message at most"),
        "max_inflight": ((int,), 20, "unacknowledged messages at most"),
        "connect_delay_max_s": ((int, float), 10.0, "random delay before the first connect"),
        "backoff_base_s": ((int, float), 1.0, "reconnect backoff base"),
        "backoff_cap_s": ((int, float), 300.0, "reconnect backoff cap"),
    },
    "outbox": {
        "quota_mb": (
            (int, float),
            512.0,
            "database size at which the overflow policy starts dropping",
        ),
        "commit_interval_s": ((int, float), 1.0, "group commit interval"),
        "commit_max_events": ((int,), 500, "group commit size"),
        "max_attempts": (
            (int,),
            10,
            "publish attempts refused by the broker before dead-lettering",
        ),
    },
}
LIST_SECTIONS = {
    "sources": {"uri": ((str,), None, "a source URI, e.g. sim:layout.toml?shoppers=20")}
}


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    values: dict[str, dict[str, Any]]
    sources: tuple[str, ...] = field(default_factory=tuple)

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def with_overrides(
        self, overrides: dict[tuple[str, str], Any], sources: tuple[str, ...] | None = None
    ) -> Config:
        vals = {s: dict(v) for s, v in self.values.items()}
        for (s, k), v in overrides.items():
            if v is not None:
                vals[s][k] = v
        return Config(self.path, vals, sources if sources else self.sources)

    def resolve(self, p: str | None) -> str | None:
        """A path from the config, relative to the config file's folder."""
        if p is None:
            return None
        pp = Path(p)
        if not pp.is_absolute() and self.path != "<defaults>":
            pp = Path(self.path).parent / pp
        return str(pp)


def defaults() -> Config:
    return Config("<defaults>", {s: {k: v[1] for k, v in keys.items()} for s, keys in SPEC.items()})


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return defaults()
    src = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(src, "", "config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(src, "", f"not valid TOML ({e})") from None
    return config_from_dict(raw, src)


def config_from_dict(raw: dict[str, Any], src: str) -> Config:
    values = {s: {k: v[1] for k, v in keys.items()} for s, keys in SPEC.items()}
    sources: list[str] = []
    for section, body in raw.items():
        if section in LIST_SECTIONS:
            if not isinstance(body, list):
                raise InputError(src, section, 'expected [[sources]] tables with uri = "..."')
            for i, item in enumerate(body):
                if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
                    raise InputError(src, f"{section}[{i}].uri", "expected a source URI string")
                extra = set(item) - {"uri"}
                if extra:
                    raise InputError(
                        src, f"{section}[{i}].{sorted(extra)[0]}", "unknown key; expected only uri"
                    )
                sources.append(item["uri"])
            continue
        spec = SPEC.get(section)
        if spec is None:
            raise InputError(
                src, section, f"unknown section; expected one of {sorted([*SPEC, *LIST_SECTIONS])}"
            )
        if not isinstance(body, dict):
            raise InputError(src, section, "expected a table")
        for key, v in body.items():
            if key not in spec:
                raise InputError(
                    src, f"{section}.{key}", f"unknown key; expected one of {sorted(spec)}"
                )
            types, _, what = spec[key]
            if isinstance(v, bool) and bool not in types:
                raise InputError(src, f"{section}.{key}", f"expected {what}, got {v!r}")
            if not isinstance(v, types):
                raise InputError(src, f"{section}.{key}", f"expected {what}, got {v!r}")
            values[section][key] = float(v) if float in types and isinstance(v, int | float) else v
    cfg = Config(src, values, tuple(sources))
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    src = cfg.path
    p = cfg.values["pipeline"]
    if p["min_dwell_s"] <= 0:
        raise InputError(src, "pipeline.min_dwell_s", "expected a positive number of seconds")
    if cfg.values["gateway"]["log_level"] not in ("debug", "info", "warning", "error"):
        raise InputError(src, "gateway.log_level", "expected one of debug, info, warning, error")
    sec = cfg.values["privacy"]["secret"]
    if sec is not None and len(sec) < 16:
        raise InputError(src, "privacy.secret", "expected at least 16 characters (a random key)")
    m = cfg.values["mqtt"]
    if m["protocol"] not in ("5", "3.1.1"):
        raise InputError(src, "mqtt.protocol", 'expected "5" or "3.1.1"')
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        f = cfg.resolve(m[key])
        if f is not None and not Path(f).is_file():
            raise InputError(src, f"mqtt.{key}", f"file {f} does not exist")
    if (m["cert_file"] is None) != (m["key_file"] is None):
        raise InputError(src, "mqtt.cert_file", "cert_file and key_file go together (mutual TLS)")
    sf = cfg.resolve(cfg.values["privacy"]["secret_file"])
    if sf is not None and not Path(sf).is_file():
        raise InputError(src, "privacy.secret_file", f"file {sf} does not exist")
    if not 1 <= m["max_inflight"] <= 65535:
        raise InputError(src, "mqtt.max_inflight", "expected 1..65535")
    if not 1 <= m["max_batch"] <= 1000:
        raise InputError(src, "mqtt.max_batch", "expected 1..1000")


def read_secret(cfg: Config) -> bytes | None:
    sec = cfg.values["privacy"]["secret"]
    if sec is not None:
        return str(sec).encode()
    sf = cfg.resolve(cfg.values["privacy"]["secret_file"])
    if sf is not None:
        return Path(sf).read_bytes().strip()
    return None
