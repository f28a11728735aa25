"""`shelfgate run`: the gateway daemon (see gateway.app)."""

from __future__ import annotations

import argparse


def cmd_run(a: argparse.Namespace) -> int:
    import os

    from gateway.app import run_gateway
    from gateway.startup import effective_setup, load_model, load_store_layout, prepare_data_dir

    os.umask(0o077)  # the outbox, its key and the data dir are the gateway's alone (0600 / 0700)
    setup = effective_setup(a)
    layout = load_store_layout(setup.layout_path)
    model = load_model(setup.calibration)
    if a.role == "node":  # forwards its radios to the positioning gateway (gateway/node.py)
        from gateway.node import run_node

        return run_node(setup.cfg, layout, setup.sources)
    prepare_data_dir(setup.cfg.gateway.data_dir)
    return run_gateway(
        setup.cfg, layout, model, setup.sources, exit_when_drained=a.exit_when_drained
    )


def add_setup_arguments(p: argparse.ArgumentParser) -> None:
    """The options `run` and `check` share (the command line wins over the file)."""
    p.add_argument("--config", help="gateway.toml (default: built-in defaults, a simulated store)")
    p.add_argument(
        "--source",
        action="append",
        help="source URI (repeatable), e.g. sim:layout.toml?shoppers=20, replay:trace.jsonl",
    )
    p.add_argument("--layout", help="store layout TOML")
    p.add_argument("--calibration", help="calibration JSON")
    p.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--data-dir", help="directory of the outbox database")
    p.add_argument("--store", help="store id")
    p.add_argument("--gateway", help="gateway id")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="run the gateway daemon")
    add_setup_arguments(r)
    r.add_argument(
        "--role",
        choices=("gateway", "node"),
        default="gateway",
        help="gateway: decide zones and deliver events (default); node: forward what this "
        "Pi's radios hear to the gateway over MQTT ([gateway] id is the node's id)",
    )
    r.add_argument(
        "--exit-when-drained",
        action="store_true",
        help="exit 0 once the sources are exhausted and every event is acknowledged",
    )
    r.add_argument(
        "--web",
        metavar="HOST:PORT",
        help="serve the technician web app and /metrics here (over [web] listen)",
    )
    r.set_defaults(func=cmd_run)
