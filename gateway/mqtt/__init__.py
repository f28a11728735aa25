"""MQTT: the link to the broker (one network thread) and its settings."""

from .link import Connected, Disconnected, LinkEvent, Message, MqttLink, Published, Unsent
from .settings import LinkSettings, full_jitter, is_loopback, make_client, parse_broker

__all__ = [
    "Connected",
    "Disconnected",
    "LinkEvent",
    "LinkSettings",
    "Message",
    "MqttLink",
    "Published",
    "Unsent",
    "full_jitter",
    "is_loopback",
    "make_client",
    "parse_broker",
]
