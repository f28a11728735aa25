"""k-anonymous shopper-path analytics (filled in below)."""

from __future__ import annotations

import argparse


def run_report(a: argparse.Namespace) -> int:
    raise NotImplementedError
