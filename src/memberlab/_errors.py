"""The exception tree of memberlab.

Every user mistake raises a subclass of the matching built-in, so ``except ValueError``
keeps working for callers that do not know memberlab's types.
"""

from __future__ import annotations

__all__ = [
    "AnchorSupportError",
    "AuthError",
    "ChoiceQueryError",
    "ConflictError",
    "ConvergenceWarning",
    "DataValidationError",
    "ForbiddenError",
    "LeaseBusyError",
    "MemberlabError",
    "MissingDependencyError",
    "NoChoiceModelError",
    "NoItemsError",
    "NotFittedError",
    "SchemaVersionError",
    "SpaceConflictError",
    "StaleSnapshotError",
    "StoreUnavailableError",
    "TaskFailedError",
    "UnknownDecisionError",
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


class UnknownDecisionError(UnknownItemError):
    """An event names a decision id that was never logged."""

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.detail = detail


class NoChoiceModelError(UnknownItemError):
    """A membership counterfactual was asked of a service started without a choice model."""


class NotFittedError(MemberlabError, RuntimeError):
    """A results attribute was asked for before ``fit`` ran."""


class AnchorSupportError(DataValidationError):
    """The anchor action is never (or almost never) chosen where it must be."""


class SchemaVersionError(MemberlabError, ValueError):
    """A saved file has a schema version this release cannot read."""


class ChoiceQueryError(DataValidationError):
    """A counterfactual query the choice model cannot answer; the message says why."""


class MissingDependencyError(MemberlabError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class StoreUnavailableError(MemberlabError, ConnectionError):
    """The database cannot be opened or reached (wrong URL, server down, no database)."""


class ConflictError(MemberlabError, RuntimeError):
    """The request conflicts with the current state (HTTP 409)."""


class SpaceConflictError(ConflictError):
    """A layout space exists with a definition the request cannot be reconciled with."""


class NoItemsError(ConflictError):
    """There is nothing to choose from: no active item."""


class StaleSnapshotError(MemberlabError, RuntimeError):
    """Another writer published the snapshot version this one meant to publish."""


class LeaseBusyError(MemberlabError, RuntimeError):
    """Another process holds the trainer lease; retry shortly."""


class AuthError(MemberlabError, PermissionError):
    """A missing, unknown or revoked API key (HTTP 401)."""


class ForbiddenError(AuthError):
    """A valid key whose scope does not allow the call (HTTP 403)."""


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
