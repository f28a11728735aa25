"""The one table from source URI scheme to driver, with lazy imports: a missing optional
dependency (bleak on a laptop, pyserial) fails only when that kind of source is asked for."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import cast

from positioning.errors import InputError

from .source import PlainSpec, Source, SourceContext, SourceSpec, SourceUri, parse_source_uri

# scheme -> (module, class); each class takes (SourceUri, SourceContext)
SOURCES: dict[str, tuple[str, str]] = {
    "sim": ("drivers.simulated", "SimSource"),
    "replay": ("drivers.trace.source", "ReplaySource"),
    "serial": ("drivers.serial.source", "SerialSource"),
    "bluez": ("drivers.bluez", "BluezSource"),
    "theengs": ("drivers.network.source", "TheengsSource"),
    "espresense": ("drivers.network.source", "EspresenseSource"),
    "shelfgate": ("drivers.network.source", "NodeSource"),
}


def parse_uri(uri: str, where: str = "--source") -> SourceUri:
    return parse_source_uri(uri, tuple(SOURCES), where)


def open_source(spec: str | SourceSpec, ctx: SourceContext, where: str = "--source") -> Source:
    """A source from its URI, or from its whole configuration (networked receivers take their
    topic and credentials from it)."""
    spec = PlainSpec(spec) if isinstance(spec, str) else spec
    su = dataclasses.replace(parse_uri(spec.uri, where), spec=spec)
    module, name = SOURCES[su.kind]
    factory = cast(
        Callable[[SourceUri, SourceContext], Source], getattr(importlib.import_module(module), name)
    )
    return factory(su, ctx)


def open_sources(
    specs: Sequence[str | SourceSpec], ctx: SourceContext, where: str = "--source"
) -> list[Source]:
    """Every configured source; one radio per receiver id (two radios on one id would count its
    advertisements twice)."""
    out: list[Source] = []
    fed: dict[str, str] = {}
    for spec in specs:
        uri = spec if isinstance(spec, str) else spec.uri
        src = open_source(spec, ctx, where)
        rx = getattr(src, "feeds", None)
        if rx is not None:
            if rx in fed:
                raise InputError(uri, "rx", f"receiver {rx} is already fed by {fed[rx]}")
            fed[rx] = uri
        out.append(src)
    for src in out:  # sources of many receivers (networked nodes) leave the radios' ids alone
        exclude = getattr(src, "exclude", None)
        if exclude is not None:
            exclude(fed)
    return out
