"""The cloud side: `shelfgate consume` (MQTT -> PostgreSQL, exactly once per event_id) and the
k-anonymous shopper-path analytics over what it stores. Needs the `cloud` extra (psycopg 3);
never installed on a gateway."""
