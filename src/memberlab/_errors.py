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
    "TaskFailedError",
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


class TaskFailedError(MemberlabError, RuntimeError):
    """A task of an offline job raised, or the worker running it died.

    Attributes
    ----------
    task_index : int
        Position of the failed task in the job's task list.
    task : str
        A short ``repr`` of the task.
    """

    def __init__(self, message: str, *, task_index: int = -1, task: str = "") -> None:
        super().__init__(message)
        self.task_index = task_index
        self.task = task

    @classmethod
    def from_task(cls, index: int, total: int, task: str, cause: BaseException) -> TaskFailedError:
        """The error for task ``index`` of ``total`` failing with ``cause``."""
        return cls(
            f"task {index} of {total} ({task}) failed: {type(cause).__name__}: {cause}",
            task_index=index,
            task=task,
        )


class ConvergenceWarning(UserWarning):
    """A numerical routine stopped before meeting its tolerance."""
