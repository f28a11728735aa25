from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DANIS = SHARED / "data" / "danis-static"


@pytest.fixture
def root() -> Path:
    return ROOT


def shelfgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]
