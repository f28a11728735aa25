"""The technician web app on the gateway (`[web]`, `shelfgate run --web HOST:PORT`): a live
floor map, receiver health, tag detail and Prometheus metrics, served by the daemon itself
(`server.WebService`, one more service of `gateway.app.Gateway`). Importing this package is
cheap: aiohttp is imported by `server` only when the web app is switched on."""
