"""Plain records the store reads and writes, and its small shared constants."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SCOPES",
    "ApiKeyRecord",
    "DecisionRecord",
    "DueImpression",
    "EventRecord",
    "ItemRecord",
    "Snapshot",
    "StoreStats",
]

SCOPES = ("decide", "admin")
EVENT_CHUNK = 500
KEY_PREFIX = "mlk"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as listed: its first 16 characters, never the key itself."""

    prefix: str
    scope: str
    label: str
    created_at: float
    revoked: bool


@dataclass(frozen=True, slots=True)
class ItemRecord:
    item_id: str
    attributes: dict[str, Any]
    active: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A logged decision; ``served`` is the list of item ids (callouts) or the layout.

    ``unit_id`` is the unit (shopper, member) the request named, ``assignment`` its
    experiment arm (``"policy"`` or ``"holdout"``; ``None`` when no experiment runs) and
    ``candidates`` the item ids the decision chose from (``None`` for layouts), or a
    reference to a list logged before (``{"ref": key}``; the full list is logged as
    ``{"key": key, "ids": [...]}``; see ``memberlab.service._experiment``).
    """

    decision_id: str
    kind: str
    space: str
    context: dict[str, Any]
    served: Any
    policy_version: int
    seed: int
    ts: float
    ts_client: bool = False
    unit_id: str | None = None
    assignment: str | None = None
    candidates: list[str] | dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    event_id: str
    decision_id: str
    item_id: str
    type: str
    value: float | None
    ts: float
    ts_client: bool = False
    #: the plan a conversion names (the value objective), None for clicks
    plan: str | None = None


@dataclass(frozen=True, slots=True)
class DueImpression:
    """An impression whose attribution window closed, with its reward (and, read with
    ``conversions=True``, the plan of its first conversion in the window)."""

    decision_id: str
    item_id: str
    space: str
    context: dict[str, Any]
    served: Any
    reward: float
    plan: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    kind: str
    space: str
    version: int
    data: bytes
    spec: Any
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoreStats:
    decisions: int
    events: int
    pending: int
    closed: int
    positives: int
    policy_version: int
    extra: dict[str, float] = field(default_factory=dict)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
