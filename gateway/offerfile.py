"""Reading an offer catalogue file, with errors that name the file and the JSON path."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from positioning.errors import InputError
from positioning.offers import Catalogue, CatalogueError, parse_catalogue


def load_catalogue(path: str | Path, zones: Collection[str] | None = None) -> Catalogue:
    """A catalogue file (`replay --offers`), validated as the daemon validates a pushed one."""
    src = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(src, "", "offer catalogue not found") from None
    except json.JSONDecodeError as e:
        raise InputError(src, f"line {e.lineno}", f"not valid JSON ({e.msg})") from None
    try:
        return parse_catalogue(obj, zones)
    except CatalogueError as e:
        raise InputError(src, e.where, str(e).split(": ", 1)[1]) from None
