"""The `shelfgate` command line: one module per command, each with its `register`. The forms
relied on from outside are in DESIGN.md. Command modules import their heavy dependencies inside
the command, so `shelfgate status` does not load numpy."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gateway import __version__
from positioning.errors import ShelfgateError

COMMANDS = (
    "simulate",
    "replay",
    "calibrate",
    "evaluate",
    "scan",
    "run",
    "check",
    "status",
    "offers",
    "diagnose",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="shelfgate", description="In-store BLE beacon gateway")
    ap.add_argument("--version", action="version", version=f"shelfgate {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    importlib.import_module("gateway.cloud.cli").register(sub)  # consume, paths (the cloud side)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rc: int = a.func(a)
        return rc
    except ShelfgateError as e:
        # user mistakes and radios that cannot work: one line each, non-zero (systemd restarts
        # `run`); a configuration with several problems lists them all
        lines = str(e).splitlines() or [""]
        for line in lines:
            print(f"shelfgate {a.cmd}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
