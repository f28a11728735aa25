"""The broker connection's settings: broker URI rules, TLS and credentials, the reconnect
policy; one paho client factory (`make_client`) for the daemon and `shelfgate check`."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from positioning.errors import InputError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    tls: bool
    client_id: str
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 60
    session_expiry_s: int = 3600
    connect_delay_max_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    max_inflight: int = 20


def parse_broker(
    uri: str, allow_plaintext: bool, source: str = "mqtt.broker"
) -> tuple[str, int, bool]:
    """mqtt://host:port or mqtts://host:port -> (host, port, tls). Plaintext only to loopback
    unless allowed explicitly: no silent plaintext to a real network."""
    parts = urlsplit(uri)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise InputError(source, uri, "expected mqtt://host:port or mqtts://host:port")
    if parts.username is not None or parts.password is not None:
        raise InputError(
            source,
            f"{parts.scheme}://***@{parts.hostname}",
            "credentials do not belong in the broker URI (it is shown in status and logs); "
            "use mqtt.username and mqtt.password_file",
        )
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise InputError(source, uri, "expected a port number 1..65535") from None
    host = parts.hostname
    if not tls and not allow_plaintext and not is_loopback(host):
        raise InputError(
            source,
            uri,
            "plaintext MQTT to a non-loopback host; use mqtts:// or set mqtt.allow_plaintext = true",
        )
    return host, port, tls


def is_loopback(host: str) -> bool:
    """Only a literal loopback address (or `localhost` itself): a name such as
    `127.0.0.1.nip.io` or `localhost.example` resolves anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """AWS-style full jitter: uniform(0, min(cap, base * 2^attempt))."""
    return rng.uniform(0.0, min(cap, base * (2.0 ** min(attempt, 30))))


def make_client(
    s: LinkSettings,
    client_id: str | None = None,
    session: bool = True,
    cls: type[mqtt.Client] | None = None,
) -> mqtt.Client:
    """A paho client for the configured broker: protocol, credentials and TLS (verification on:
    CA from the config or the system store; a client certificate for mutual TLS). `session`:
    keep the broker-side session (MQTT 3.1.1 clean_session off; v5 decides at connect). `cls`: a
    subclass of paho's client (the networked receivers' buffered reader)."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    cls = cls or mqtt.Client
    v5 = s.protocol == "5"
    client = cls(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=s.client_id if client_id is None else client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not session,
        reconnect_on_failure=False,
    )
    if s.username is not None:
        client.username_pw_set(s.username, s.password)
    if s.tls:
        client.tls_set(
            ca_certs=s.ca_file,
            certfile=s.cert_file,
            keyfile=s.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client
