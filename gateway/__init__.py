"""The shelfgate daemon and command line: config, pipeline wiring, outbox, MQTT, offers."""

__version__ = "0.1.0"
