"""The one root of shelfgate's errors; the CLI turns these into a one-line explanation."""

from __future__ import annotations


class ShelfgateError(Exception):
    """A problem the user can fix (bad input, bad config); never a bug."""


class InputError(ShelfgateError):
    """Bad input in a named file: says where (file, key or line) and what was expected."""

    def __init__(self, source: str, where: str, expected: str) -> None:
        self.source = source
        self.where = where
        self.expected = expected
        loc = f"{source}: {where}" if where else source
        super().__init__(f"{loc}: {expected}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str, str]]:
        return (InputError, (self.source, self.where, self.expected))  # crosses process bounds


class CalibrationError(ShelfgateError):
    """A calibration walk that cannot be used (unknown zones, too little data): says why."""
