"""The one table from source URI scheme to driver, with lazy imports: a missing optional
dependency (bleak on a laptop, pyserial) fails only when that kind of source is asked for."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import cast

from positioning.errors import InputError

from .source import Source, SourceContext, SourceUri, parse_source_uri

# scheme -> (module, class); each class takes (SourceUri, SourceContext)
SOURCES: dict[str, tuple[str, str]] = {
    "sim": ("drivers.simulated", "SimSource"),
    "replay": ("drivers.trace.source", "ReplaySource"),
    "serial": ("drivers.serial.source", "SerialSource"),
    "bluez": ("drivers.bluez", "BluezSource"),
}


def parse_uri(uri: str, where: str = "--source") -> SourceUri:
    return parse_source_uri(uri, tuple(SOURCES), where)


def open_source(uri: str, ctx: SourceContext, where: str = "--source") -> Source:
    su = parse_uri(uri, where)
    module, name = SOURCES[su.kind]
    factory = cast(
        Callable[[SourceUri, SourceContext], Source], getattr(importlib.import_module(module), name)
    )
    return factory(su, ctx)


def open_sources(uris: Sequence[str], ctx: SourceContext, where: str = "--source") -> list[Source]:
    """Every configured source; one radio per receiver id (two radios on one id would count its
    advertisements twice)."""
    out: list[Source] = []
    fed: dict[str, str] = {}
    for uri in uris:
        src = open_source(uri, ctx, where)
        rx = getattr(src, "feeds", None)
        if rx is not None:
            if rx in fed:
                raise InputError(uri, "rx", f"receiver {rx} is already fed by {fed[rx]}")
            fed[rx] = uri
        out.append(src)
    return out
