"""`shelfgate run`: the gateway daemon (see gateway.app).

A configuration that needs a restart (pushed over MQTT, or `reload`) ends the daemon cleanly
(flushed, acknowledged) and the process executes itself again with the same command line: the
same PID, so it works under systemd (Type=notify, the watchdog) and without it (tests, a
terminal)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger(__name__)


def cmd_run(a: argparse.Namespace) -> int:
    from gateway.app import RESTART, run_gateway
    from gateway.remote.state import save_state
    from gateway.startup import effective_setup, load_model, load_store_layout, prepare_data_dir
    from positioning.errors import ShelfgateError

    os.umask(0o077)  # the outbox, its key and the data dir are the gateway's alone (0600 / 0700)
    setup = effective_setup(a, boot=True)
    _logging(setup.cfg.gateway.log_level, setup.cfg.gateway.log_file, a.verbose)
    try:
        layout = load_store_layout(setup.layout_path)
        model = load_model(setup.calibration)
        if a.role == "node":  # forwards its radios to the positioning gateway (gateway/node.py)
            from gateway.node import run_node

            return run_node(setup.cfg, layout, setup.sources)
        if setup.calibration is not None:
            log.info("zones decided with the calibration %s", setup.calibration)
        prepare_data_dir(setup.cfg.gateway.data_dir)
        rc = run_gateway(
            setup.cfg,
            layout,
            model,
            setup.sources,
            exit_when_drained=a.exit_when_drained,
            remote=setup.remote,
            source=setup.source,
            check_args=setup_argv(a),
            calibration_from=setup.calibration,
        )
    except ShelfgateError as e:
        trial = setup.remote.trial
        if trial is None:
            raise
        # the configuration on trial cannot even start: back to the last good, at once
        from gateway.clock import Clock

        reason = "the gateway cannot start with it: " + " ".join(str(e).splitlines())
        log.error("remote config version %d rejected: %s", trial.pushed.version, reason)
        save_state(
            setup.cfg.gateway.data_dir,
            setup.remote.refused(trial.pushed.version, reason, Clock().wall()),
        )
        rc = RESTART
    if rc == RESTART:
        _reexec()
    return rc


def _reexec() -> None:
    """The same command line again, in this process (sys.orig_argv: `python -m gateway.cli run
    ...` and the `shelfgate` script alike)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _logging(level: str, log_file: str | None, verbose: bool) -> None:
    root = logging.getLogger()
    if not verbose:
        root.setLevel(level.upper())
    if log_file is not None:
        from logging.handlers import RotatingFileHandler

        h = RotatingFileHandler(log_file, maxBytes=5 * 1024 * 1024, backupCount=2)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)


SETUP_OPTIONS = ("config", "layout", "calibration", "broker", "data_dir", "store", "gateway")


def setup_argv(a: argparse.Namespace) -> tuple[str, ...]:
    """The setup options of this command line (for `check` run by `diagnose`)."""
    out: list[str] = []
    for name in SETUP_OPTIONS:
        v = getattr(a, name, None)
        if v is not None:
            out += [f"--{name.replace('_', '-')}", str(v)]
    for src in getattr(a, "source", None) or ():
        out += ["--source", src]
    return tuple(out)


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
