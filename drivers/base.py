"""The source interface and the table of source kinds (imports are lazy: a missing optional
dependency fails only when that source is asked for)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs

from positioning.errors import InputError

if TYPE_CHECKING:
    from .protocols import RawAdvert

Sighting = tuple[str, int, float, float]  # (tag, receiver index, rssi dBm, t)


@dataclass(frozen=True, slots=True)
class PositionFix:
    """A position (metres, layout coordinates) of a tag that locates itself (UWB)."""

    tag: str
    x: float
    y: float
    t: float
    quality: int


class Source(Protocol):
    """A source yields batches of sightings. `live` sources stamp monotonic time; recorded ones
    (replay) carry the trace's wall-clock time."""

    name: str
    live: bool

    def batches(self) -> AsyncIterator[list[Sighting] | list[PositionFix]]: ...


@dataclass(frozen=True, slots=True)
class SourceUri:
    kind: str
    path: str
    params: dict[str, str]


KINDS = ("sim", "replay", "serial", "bluez")


def parse_source_uri(uri: str, where: str = "--source") -> SourceUri:
    kind, sep, rest = uri.partition(":")
    if not sep or kind not in KINDS:
        raise InputError(
            where,
            uri,
            f"expected a source URI of kind {', '.join(KINDS)} (e.g. sim:layout.toml?shoppers=20)",
        )
    path, _, query = rest.rpartition("?") if "?" in rest else (rest, "", "")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return SourceUri(kind, path, params)


def receiver_of(
    uri: SourceUri, name: str, rx_index: dict[str, int], default: str | None = None
) -> int:
    """The layout receiver index a radio source feeds (its `rx=` parameter); a clear error if
    it names no receiver of the layout."""
    rx = uri.params.get("rx", default)
    if rx is None or rx not in rx_index:
        raise InputError(
            name, "rx", f"expected rx=<a receiver id of the layout: {', '.join(rx_index)}>"
        )
    return rx_index[rx]


class RadioSource:
    """What a live radio source is given: its URI, the layout receiver it feeds, the monotonic
    clock that stamps sightings and the frame decoder that names tags."""

    live = True

    def __init__(
        self,
        uri: SourceUri,
        rx: int,
        mono: Callable[[], float],
        tag_of: Callable[[RawAdvert], str | None],
    ) -> None:
        self.uri = uri
        self.rx = rx
        self.name = f"{uri.kind}:{uri.path}"
        self._mono = mono
        self._tag_of = tag_of
