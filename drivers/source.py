"""The source interface and source URIs.

A source is anything that yields batches of readings (`Advertisement`s, `PositionFix`es, or,
for a recorded trace, column blocks). Which driver serves which URI scheme is decided in one
table (`drivers.registry`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs

from positioning.errors import InputError

from .advertisement import Reading

if TYPE_CHECKING:
    from positioning.layout import Layout
    from positioning.tags import TagResolver

    from .trace.reader import SightingBlock

Batch = Sequence[Reading]


class Source(Protocol):
    """`live` sources stamp monotonic time; recorded ones (replay) carry the trace's time."""

    name: str
    live: bool

    def batches(self) -> AsyncIterator[Batch | SightingBlock]: ...


class SourceSpec(Protocol):
    """A configured source: its URI and, for networked receivers, the broker topic and
    credentials (`gateway.config.SourceConfig` is one; a bare URI becomes a `PlainSpec`)."""

    @property
    def uri(self) -> str: ...
    @property
    def topic(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def password_file(self) -> str | None: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def key_file(self) -> str | None: ...
    @property
    def allow_plaintext(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PlainSpec:
    """A source given by its URI alone (`--source`): no topic (the driver's default), no
    credentials."""

    uri: str
    topic: str | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    allow_plaintext: bool = False


@dataclass(frozen=True, slots=True)
class SourceUri:
    kind: str
    path: str
    params: dict[str, str]
    spec: SourceSpec | None = None  # the whole configured source (networked receivers use it)

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.path}"

    def param(self, key: str, default: str) -> str:
        return self.params.get(key, default)

    def number(self, key: str, default: float) -> float:
        raw = self.params.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise InputError(self.text, key, f"expected a number, got {raw!r}") from None

    def integer(self, key: str, default: int) -> int:
        raw = self.params.get(key)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise InputError(self.text, key, f"expected a whole number, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What every driver may use: the store layout (receiver ids), the monotonic clock that
    stamps live readings, and the tag resolver (only the trace reader uses it, to resolve
    tags where it parses, in its worker processes)."""

    layout: Layout
    mono: Callable[[], float]
    resolver: TagResolver
    workers: int | None = None  # trace parser processes (0: none; None: the reader's default)
    wall: Callable[[], float] | None = None  # wall time on `mono`'s scale (receiver clocks)

    @property
    def receivers(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.layout.receivers)

    def receiver(self, uri: SourceUri, default: str | None = None) -> str:
        """The layout receiver a radio source feeds (its `rx=` parameter); a clear error if it
        names no receiver of the layout."""
        rx = uri.params.get("rx", default)
        if rx is None or rx not in self.receivers:
            raise InputError(
                uri.text,
                "rx",
                f"expected rx=<a receiver id of the layout: {', '.join(self.receivers)}>",
            )
        return rx


def parse_source_uri(uri: str, kinds: Sequence[str], where: str = "--source") -> SourceUri:
    kind, sep, rest = uri.partition(":")
    if not sep or kind not in kinds:
        raise InputError(
            where,
            uri,
            f"expected a source URI of kind {', '.join(kinds)} (e.g. sim:layout.toml?shoppers=20)",
        )
    path, _, query = rest.rpartition("?") if "?" in rest else (rest, "", "")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return SourceUri(kind, path, params)
