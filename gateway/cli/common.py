"""What several commands share: output files, the default layout, progress on a terminal."""

from __future__ import annotations

from pathlib import Path

from positioning.errors import InputError

REPO_LAYOUT = Path(__file__).resolve().parent.parent.parent / "config" / "layout.toml"


def open_out(path: str) -> Path:
    """An output path, its folder made if missing."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    return p


def default_layout() -> str:
    for p in (Path("/etc/shelfgate/layout.toml"), REPO_LAYOUT):
        if p.exists():
            return str(p)
    raise InputError("--layout", "", "no layout given and none at /etc/shelfgate/layout.toml")
