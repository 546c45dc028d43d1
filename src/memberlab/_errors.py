"""The exception tree of memberlab.

Every user mistake raises a subclass of the matching built-in, so ``except ValueError``
keeps working for callers that do not know memberlab's types.
"""

from __future__ import annotations

__all__ = [
    "AnchorSupportError",
    "ConvergenceWarning",
    "DataValidationError",
    "MemberlabError",
    "NotFittedError",
    "SchemaVersionError",
    "UnknownItemError",
]


class MemberlabError(Exception):
    """Base class of every error raised on purpose by memberlab."""


class DataValidationError(MemberlabError, ValueError):
    """Input data has the wrong shape, type, values or structure."""


class UnknownItemError(MemberlabError, KeyError):
    """An item, decision, layout space or other named thing does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class NotFittedError(MemberlabError, RuntimeError):
    """A results attribute was asked for before ``fit`` ran."""


class AnchorSupportError(DataValidationError):
    """The anchor action is never (or almost never) chosen where it must be."""


class SchemaVersionError(MemberlabError, ValueError):
    """A saved file has a schema version this release cannot read."""


class ConvergenceWarning(UserWarning):
    """A numerical routine stopped before meeting its tolerance."""
