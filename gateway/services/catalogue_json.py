"""A catalogue's JSON decoded in small steps, so that the thread decoding it never holds the GIL
for long.

A C decoder (orjson, or `json.loads`) holds the interpreter lock for the whole document: 130-170
ms for 100k offers (6.5 MB) here, ~4x that on a Pi, during which the event loop cannot run even
though the decoding happens on a worker thread. Here the top-level object is walked in Python and
each element of its `"offers"` array is decoded by its own short C call (a few microseconds), so
the interpreter switches back to the loop every few milliseconds. The result equals `json.loads`
of the same text, except that NaN and Infinity are rejected (they are not JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def loads(payload: bytes) -> Any:
    """Decode `payload` (UTF-8 JSON). Raises `json.JSONDecodeError` naming the position."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise json.JSONDecodeError(f"not UTF-8 ({e.reason})", "", e.start) from None
    i = _skip(text, 0)
    if text.startswith("{", i):
        value, i = _object(text, i + 1)
    else:
        value, i = _value(text, i)
    i = _skip(text, i)
    if i != len(text):
        raise json.JSONDecodeError("Extra data", text, i)
    return value


def _skip(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _value(text: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, i)
    except ValueError as e:  # the NaN/Infinity rejection above, or JSONDecodeError itself
        if isinstance(e, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(e), text, i) from None


def _object(text: str, i: int) -> tuple[dict[str, Any], int]:
    """The members of an object whose `{` is just before `i`; `"offers": [...]` element-wise."""
    out: dict[str, Any] = {}

    def member(i: int) -> int:
        if not text.startswith('"', i):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
        key, i = _value(text, i)
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        i = _skip(text, i + 1)
        if key == "offers" and text.startswith("[", i):
            out[key], i = _array(text, i + 1)
        else:
            out[key], i = _value(text, i)
        return i

    return out, _items(text, i, "}", member)


def _array(text: str, i: int) -> tuple[list[Any], int]:
    out: list[Any] = []

    def element(i: int) -> int:
        v, i = _value(text, i)
        out.append(v)
        return i

    return out, _items(text, i, "]", element)


def _items(text: str, i: int, close: str, item: Callable[[int], int]) -> int:
    """Comma-separated items up to `close` (whose opening bracket is just before `i`), each
    parsed by `item` (from its position, returning where it ends); returns the end."""
    i = _skip(text, i)
    if text.startswith(close, i):
        return i + 1
    while True:
        i = _skip(text, item(i))
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith(close, i):
            return i + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
