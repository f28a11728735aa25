"""Configuration pushed over MQTT: the message, its validation (exactly the file's), what may be
applied hot, and the state kept in the data dir (last good, on trial, last rejected)."""
