"""Validation generated from a section dataclass's fields: the field's type annotation says what
a TOML value must be, its `expected` metadata says it in words. Every problem is collected (a
file with three mistakes gets three lines), each naming the file, the key and, where the file
has it, the line."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def option(default: Any, expected: str, path: bool = False) -> Any:
    """A config key: its default and what is expected, in words. A `path` is taken relative to
    the config file's folder."""
    return field(default=default, metadata={"expected": expected, "path": path})


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str
    line: int | None = None


class Problems:
    """Problems found in one file, with the line of each key where the text shows it."""

    def __init__(self, source: str, text: str = "", base: Path | None = None) -> None:
        self.source = source
        self.base = base  # the folder relative paths are taken from (None: as given)
        self.found: list[Problem] = []
        self._lines = text.splitlines()

    def add(self, key: str, message: str) -> None:
        self.found.append(Problem(key, message, self.line_of(key)))

    def lines(self) -> list[str]:
        """One line per problem: file[:line]: key: what was expected."""
        out = []
        for p in self.found:
            loc = f"{self.source}:{p.line}" if p.line is not None else self.source
            out.append(f"{loc}: {p.key}: {p.message}" if p.key else f"{loc}: {p.message}")
        return out

    def line_of(self, key: str) -> int | None:
        """The line of `section.key` (or of `[section]`, `[[sources]]` item i) in the file."""
        parts = key.split(".")
        m = re.fullmatch(r"(\w+)\[(\d+)\]", parts[0])
        section, index = (m.group(1), int(m.group(2))) if m else (parts[0], None)
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(section)}\s*\]\]?\s*(#.*)?$")
        seen = -1
        start = None
        for i, line in enumerate(self._lines):
            if header.match(line):
                seen += 1
                if index is None or seen == index:
                    start = i
                    break
        if start is None:
            return None
        if len(parts) == 1:
            return start + 1
        keyre = re.compile(rf"^\s*{re.escape(parts[1])}\s*=")
        for i in range(start + 1, len(self._lines)):
            if re.match(r"^\s*\[", self._lines[i]):
                break
            if keyre.match(self._lines[i]):
                return i + 1
        return start + 1


def _allowed(tp: Any) -> tuple[tuple[type, ...], bool, bool]:
    """(accepted types, None allowed, a tuple of strings) for a field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner, _, is_tuple = _allowed(args[0])
        return inner, True, is_tuple
    if origin is tuple:
        return (list,), False, True
    if tp is float:
        return (int, float), False, False
    return (tp,), False, False


def build_section(cls: type[T], body: dict[str, Any], section: str, problems: Problems) -> T:
    """An instance of the section dataclass from a TOML table; problems are recorded, and a
    key with a problem keeps its default."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in body.items():
        where = f"{section}.{key}"
        f = fields.get(key)
        if f is None:
            problems.add(where, f"unknown key; expected one of {sorted(fields)}")
            continue
        accepted, _, is_tuple = _allowed(hints[key])
        expected = f.metadata.get("expected", key)
        if (isinstance(raw, bool) and bool not in accepted) or not isinstance(raw, accepted):
            problems.add(where, f"expected {expected}, got {raw!r}")
            continue
        v: Any = raw
        if is_tuple:
            if not all(isinstance(x, str) for x in v):
                problems.add(where, f"expected {expected}, got {v!r}")
                continue
            v = tuple(v)
        elif float in accepted:
            v = float(v)
        elif f.metadata.get("path") and problems.base is not None:
            v = str(problems.base / v) if not Path(v).is_absolute() else v
        values[key] = v
    return cls(**values)


def describe(cls: type[Any]) -> dict[str, str]:
    """key -> what is expected, for documentation and `check`."""
    return {f.name: f.metadata.get("expected", "") for f in dataclasses.fields(cls)}
