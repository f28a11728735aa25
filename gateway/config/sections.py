"""gateway.toml's sections, one frozen dataclass each: the fields are the keys, their defaults
and what is expected (the validation is generated from them, see `fields`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .fields import option

if TYPE_CHECKING:
    from gateway.mqtt.settings import LinkSettings  # paho loads only where a link is made

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class GatewaySection:
    id: str = option("gw-01", "the gateway's id, unique in the store")
    store: str | None = option(None, "the store id (default: the layout's store.id)")
    layout: str | None = option(None, "path to the store layout TOML", path=True)
    calibration: str | None = option(
        None, "path to a calibration JSON from `shelfgate calibrate`", path=True
    )
    data_dir: str = option("/var/lib/shelfgate", "directory for the outbox database")
    log_level: str = option("info", "one of debug, info, warning, error")
    source_silence_s: float = option(
        300.0, "seconds a live source may deliver nothing before the systemd watchdog starves"
    )
    log_file: str | None = option(
        None, "also log to this file (for `shelfgate diagnose` where there is no journal)"
    )
    group: str | None = option(
        None,
        "several positioning gateways in one store: the group's name (the same on each; each "
        "tag has one owner among the group's online gateways, event ids are the group's)",
    )


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    min_dwell_s: float = option(60.0, "seconds a stay must last to be a dwell")
    dwell_gap_s: float = option(20.0, "seconds away from a zone that do not end a dwell")
    classify_every_s: float = option(1.0, "seconds between zone decisions per tag")
    tag_expiry_s: float = option(120.0, "seconds unheard after which a tag is forgotten")
    max_tags: int = option(5000, "most tags tracked at once")
    registered_addresses: tuple[str, ...] = option(
        (), "addresses of store tags without a beacon frame"
    )


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    secret: str | None = option(None, "per-store pseudonymisation key (at least 16 characters)")
    secret_file: str | None = option(
        None, "file holding the per-store pseudonymisation key", path=True
    )
    raw_ids: bool = option(False, "true sends raw tag ids (only with the store's consent)")

    def read_secret(self) -> bytes | None:
        if self.secret is not None:
            return self.secret.encode()
        if self.secret_file is not None:
            return Path(self.secret_file).read_bytes().strip()
        return None


@dataclass(frozen=True, slots=True)
class MqttConfig:
    broker: str = option("mqtt://127.0.0.1:1883", "mqtt://host:port or mqtts://host:port")
    client_id: str | None = option(None, "MQTT client id (default shelfgate-<store>-<gateway>)")
    protocol: str = option("5", '"5" (MQTT v5) or "3.1.1"')
    username: str | None = option(None, "user name")
    password: str | None = option(None, "password")
    password_file: str | None = option(None, "file holding the password", path=True)
    ca_file: str | None = option(
        None, "CA certificate file to verify the broker (default: system CAs)", path=True
    )
    cert_file: str | None = option(None, "client certificate (PEM) for mutual TLS", path=True)
    key_file: str | None = option(None, "client private key (PEM) for mutual TLS", path=True)
    allow_plaintext: bool = option(False, "allow mqtt:// to a host other than loopback")
    keepalive_s: int = option(60, "keepalive seconds")
    topic_prefix: str = option("shelfgate/v1", "topic prefix")
    max_batch: int = option(100, "events per message at most")
    max_inflight: int = option(20, "unacknowledged messages at most")
    connect_delay_max_s: float = option(10.0, "random delay before the first connect")
    backoff_base_s: float = option(1.0, "reconnect backoff base")
    backoff_cap_s: float = option(300.0, "reconnect backoff cap")

    def link_settings(self, store: str, gateway: str, where: str = "mqtt.broker") -> LinkSettings:
        from gateway.mqtt.settings import LinkSettings, parse_broker

        host, port, tls = parse_broker(self.broker, self.allow_plaintext, where)
        password = self.password
        if self.password_file is not None:
            password = Path(self.password_file).read_text(encoding="utf-8").strip()
        return LinkSettings(
            host=host,
            port=port,
            tls=tls,
            client_id=self.client_id or f"shelfgate-{store}-{gateway}",
            protocol=self.protocol,
            username=self.username,
            password=password,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            keepalive_s=self.keepalive_s,
            connect_delay_max_s=self.connect_delay_max_s,
            backoff_base_s=self.backoff_base_s,
            backoff_cap_s=self.backoff_cap_s,
            max_inflight=self.max_inflight,
        )


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    quota_mb: float = option(512.0, "database size at which the overflow policy starts dropping")
    commit_interval_s: float = option(1.0, "group commit interval")
    commit_max_events: int = option(500, "group commit size")
    max_attempts: int = option(10, "publish attempts refused by the broker before dead-lettering")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One `[[sources]]` table. The keys after `uri` are for networked receivers (`theengs:`,
    `espresense:`): their broker's topic and credentials, as in `[mqtt]`; other sources have
    no use for them. Satisfies `drivers.source.SourceSpec`."""

    uri: str = option("", 'a source URI, e.g. "sim:layout.toml?shoppers=20"')
    topic: str | None = option(
        None, 'networked receivers: the topic filter, e.g. "home/+/BTtoMQTT/#"'
    )
    client_id: str | None = option(None, "networked receivers: MQTT client id (default: random)")
    username: str | None = option(None, "networked receivers: broker user name")
    password: str | None = option(None, "networked receivers: broker password")
    password_file: str | None = option(
        None, "networked receivers: file holding the broker password", path=True
    )
    ca_file: str | None = option(None, "networked receivers: CA certificate file", path=True)
    cert_file: str | None = option(None, "networked receivers: client certificate", path=True)
    key_file: str | None = option(None, "networked receivers: client private key", path=True)
    allow_plaintext: bool = option(False, "networked receivers: mqtt:// to a non-loopback host")


@dataclass(frozen=True, slots=True)
class RemoteSection:
    """Configuration and commands pushed over MQTT (`.../config`, `.../commands`)."""

    enabled: bool = option(True, "take configurations and commands from the broker")
    confirm_s: float = option(
        120.0,
        "seconds a pushed configuration has to reach the broker before it is rolled back",
    )


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen: str | None = option(
        None, 'HOST:PORT of the technician web app, e.g. "0.0.0.0:8080" (default: off)'
    )
    password_file: str | None = option(
        None, "file holding the password of user technician (HTTP Basic)", path=True
    )
    token_file: str | None = option(
        None, "file holding a token for Authorization: Bearer", path=True
    )
    cert_file: str | None = option(None, "TLS certificate (PEM): serve https", path=True)
    key_file: str | None = option(None, "TLS private key (PEM) of cert_file", path=True)
