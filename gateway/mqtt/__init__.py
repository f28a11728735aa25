"""MQTT: `link` (the network thread, the only caller of paho) and `settings` (broker URIs, TLS,
the reconnect policy, the client factory). Import from the submodules: `settings` loads without
paho or asyncio, so commands that only validate a configuration (replay) stay quick to start."""
