"""`shelfgate diagnose`: one redacted JSON bundle for support (see gateway.diagnose)."""

from __future__ import annotations

import argparse
import sys


def cmd_diagnose(a: argparse.Namespace) -> int:
    import orjson

    from gateway.clock import Clock
    from gateway.diagnose import bundle, write_private
    from gateway.startup import effective_setup

    from .run import setup_argv

    setup = effective_setup(a, complete=False)  # a half-edited config is what support sees
    b = bundle(setup.cfg, setup.remote.report(), None, a.log_lines, not a.no_check, setup_argv(a))
    body = orjson.dumps(b, option=orjson.OPT_INDENT_2) + b"\n"
    if a.out == "-":
        sys.stdout.buffer.write(body)
        return 0
    out = a.out or f"shelfgate-diagnose-{b['host']}-{int(Clock().wall())}.json"
    write_private(out, body)
    print(f"wrote {out} ({len(body) / 1024:.0f} KiB, secrets and raw ids redacted)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .run import add_setup_arguments

    d = sub.add_parser("diagnose", help="one redacted bundle for support (JSON)")
    add_setup_arguments(d)
    d.add_argument(
        "--out",
        help="the bundle's file (default shelfgate-diagnose-<host>-<time>.json; - for stdout)",
    )
    d.add_argument("--log-lines", type=int, default=200, help="last log lines to include")
    d.add_argument("--no-check", action="store_true", help="leave out `shelfgate check`")
    d.set_defaults(func=cmd_diagnose)
