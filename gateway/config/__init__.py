"""gateway.toml: loaded once into frozen dataclasses (`GatewayConfig`), validated there.

Every problem in the file is reported, one line each, naming the file, the line where the file
shows it, the key and what was expected. Unknown keys are errors: a typo must not silently fall
back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from positioning.errors import InputError

from .fields import Problems, build_section, describe
from .sections import (
    LOG_LEVELS,
    GatewaySection,
    MqttConfig,
    OutboxConfig,
    PipelineConfig,
    PrivacyConfig,
    RemoteSection,
    SourceConfig,
    WebConfig,
)

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "GatewaySection",
    "MqttConfig",
    "OutboxConfig",
    "PipelineConfig",
    "PrivacyConfig",
    "RemoteSection",
    "SourceConfig",
    "WebConfig",
    "config_from_dict",
    "describe",
    "load_config",
    "load_raw",
]

SECTIONS: dict[str, type[Any]] = {
    "gateway": GatewaySection,
    "pipeline": PipelineConfig,
    "privacy": PrivacyConfig,
    "mqtt": MqttConfig,
    "outbox": OutboxConfig,
    "web": WebConfig,
    "remote": RemoteSection,
}


class ConfigError(InputError):
    """Every problem of one configuration, one line each."""

    def __init__(self, source: str, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(source, "", "")
        self.args = ("\n".join(lines),)

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __reduce__(self) -> Any:
        return (ConfigError, (self.source, self.lines))


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    path: str = "<defaults>"
    gateway: GatewaySection = field(default_factory=GatewaySection)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    web: WebConfig = field(default_factory=WebConfig)
    remote: RemoteSection = field(default_factory=RemoteSection)
    sources: tuple[SourceConfig, ...] = ()

    @property
    def outbox_path(self) -> Path:
        return Path(self.gateway.data_dir) / "outbox.db"

    def with_overrides(
        self,
        *,
        broker: str | None = None,
        data_dir: str | None = None,
        store: str | None = None,
        gateway_id: str | None = None,
        sources: tuple[str, ...] | None = None,
        web_listen: str | None = None,
    ) -> GatewayConfig:
        """The command line wins over the file (None: keep the file's value)."""
        gw = _replace(self.gateway, data_dir=data_dir, store=store, id=gateway_id)
        mqtt = _replace(self.mqtt, broker=broker)
        srcs = tuple(SourceConfig(u) for u in sources) if sources else self.sources
        web = _replace(self.web, listen=web_listen)
        return dataclasses.replace(self, gateway=gw, mqtt=mqtt, web=web, sources=srcs)


def _replace(section: Any, **changes: Any) -> Any:
    return dataclasses.replace(section, **{k: v for k, v in changes.items() if v is not None})


def load_config(path: str | Path | None) -> GatewayConfig:
    if path is None:
        return GatewayConfig()
    raw, text = load_raw(path)
    return config_from_dict(raw, str(path), text, Path(path).parent)


def load_raw(path: str | Path) -> tuple[dict[str, Any], str]:
    """The file's parsed TOML and its text (a pushed configuration merges over it)."""
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(src, "", "config file not found") from None
    except (IsADirectoryError, PermissionError) as e:
        raise InputError(src, "", f"cannot read the config file ({e.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(src, "", f"not valid TOML ({e})") from None
    return raw, text


def config_from_dict(
    raw: dict[str, Any], src: str, text: str = "", base: Path | None = None
) -> GatewayConfig:
    """A configuration from parsed TOML (a file, or a remote configuration's sections)."""
    problems = Problems(src, text, base)
    sections: dict[str, Any] = {}
    sources: list[SourceConfig] = []
    for name, body in raw.items():
        if name == "sources":
            sources = _sources(body, problems)
            continue
        cls = SECTIONS.get(name)
        if cls is None:
            problems.add(name, f"unknown section; expected one of {sorted([*SECTIONS, 'sources'])}")
        elif not isinstance(body, dict):
            problems.add(name, "expected a table")
        else:
            sections[name] = build_section(cls, body, name, problems)
    cfg = GatewayConfig(src, **sections, sources=tuple(sources))
    for check in CHECKS:
        check(cfg, problems)
    if problems.found:
        raise ConfigError(src, problems.lines())
    return cfg


def _sources(body: Any, problems: Problems) -> list[SourceConfig]:
    if not isinstance(body, list):
        problems.add("sources", 'expected [[sources]] tables with uri = "..."')
        return []
    out = []
    for i, item in enumerate(body):
        if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
            problems.add(f"sources[{i}].uri", "expected a source URI string")
            continue
        out.append(build_section(SourceConfig, item, f"sources[{i}]", problems))
    return out


# ---------------------------------------------------------------- checks across keys


def _check_values(cfg: GatewayConfig, problems: Problems) -> None:
    if cfg.pipeline.min_dwell_s <= 0:
        problems.add("pipeline.min_dwell_s", "expected a positive number of seconds")
    if cfg.remote.confirm_s <= 0:
        problems.add("remote.confirm_s", "expected a positive number of seconds")
    if cfg.gateway.log_level not in LOG_LEVELS:
        problems.add("gateway.log_level", f"expected one of {', '.join(LOG_LEVELS)}")
    sec = cfg.privacy.secret
    if sec is not None and len(sec) < 16:
        problems.add("privacy.secret", "expected at least 16 characters (a random key)")
    m = cfg.mqtt
    if m.protocol not in ("5", "3.1.1"):
        problems.add("mqtt.protocol", 'expected "5" or "3.1.1"')
    if not 1 <= m.max_inflight <= 65535:
        problems.add("mqtt.max_inflight", "expected 1..65535")
    if not 1 <= m.max_batch <= 1000:
        problems.add("mqtt.max_batch", "expected 1..1000")
    if (m.cert_file is None) != (m.key_file is None):
        problems.add("mqtt.cert_file", "cert_file and key_file go together (mutual TLS)")
    w = cfg.web
    if (w.cert_file is None) != (w.key_file is None):
        problems.add("web.cert_file", "cert_file and key_file go together (https)")
    if w.listen is not None:
        from gateway.web.auth import parse_listen

        try:
            parse_listen(w.listen)
        except InputError as e:
            problems.add("web.listen", e.expected)


def _check_files(cfg: GatewayConfig, problems: Problems) -> None:
    m = cfg.mqtt
    files = {
        "mqtt.ca_file": m.ca_file,
        "mqtt.cert_file": m.cert_file,
        "mqtt.key_file": m.key_file,
        "mqtt.password_file": m.password_file,
        "privacy.secret_file": cfg.privacy.secret_file,
        "web.password_file": cfg.web.password_file,
        "web.token_file": cfg.web.token_file,
        "web.cert_file": cfg.web.cert_file,
        "web.key_file": cfg.web.key_file,
    }
    for i, src in enumerate(cfg.sources):
        for name in ("ca_file", "cert_file", "key_file", "password_file"):
            files[f"sources[{i}].{name}"] = getattr(src, name)
    for key, f in files.items():
        if f is not None and not Path(f).is_file():
            problems.add(key, f"file {f} does not exist")


def _check_broker(cfg: GatewayConfig, problems: Problems) -> None:
    from gateway.mqtt.settings import parse_broker

    try:
        parse_broker(cfg.mqtt.broker, cfg.mqtt.allow_plaintext, "")
    except InputError as e:
        problems.add("mqtt.broker", f"{e.where}: {e.expected}")


CHECKS: tuple[Callable[[GatewayConfig, Problems], None], ...] = (
    _check_values,
    _check_files,
    _check_broker,
)
