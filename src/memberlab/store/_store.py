"""The :class:`Store`: decisions, events, items, the pending ledger, snapshots, API keys.

SQLAlchemy Core over SQLite (WAL, the default) or PostgreSQL (psycopg). The store knows
nothing of the models' mathematics: snapshots are opaque bytes, contexts and attributes
are JSON. It is assembled from one mixin per concern over :class:`StoreBase`; the
backend-specific SQL is in :mod:`memberlab.store._dialect` and one file per backend.
"""

from __future__ import annotations

from memberlab._errors import StaleSnapshotError
from memberlab.store._base import StoreBase
from memberlab.store._experiment import EvaluationRecord, ExperimentDecisions, ExperimentMixin
from memberlab.store._items import ItemsMixin
from memberlab.store._keys import KeysMixin
from memberlab.store._lease import LeaseMixin
from memberlab.store._ledger import LedgerMixin
from memberlab.store._records import (
    SCOPES,
    ApiKeyRecord,
    DecisionRecord,
    DueImpression,
    EventRecord,
    ItemRecord,
    Snapshot,
    StoreStats,
)
from memberlab.store._snapshots import SnapshotsMixin
from memberlab.store._urls import data_dir, default_database_url, display_url, normalize_url

__all__ = [
    "SCOPES",
    "ApiKeyRecord",
    "DecisionRecord",
    "DueImpression",
    "EvaluationRecord",
    "EventRecord",
    "ExperimentDecisions",
    "ItemRecord",
    "Snapshot",
    "StaleSnapshotError",
    "Store",
    "StoreStats",
    "data_dir",
    "default_database_url",
    "display_url",
    "normalize_url",
]


class Store(
    KeysMixin, ItemsMixin, LedgerMixin, SnapshotsMixin, LeaseMixin, ExperimentMixin, StoreBase
):
    __doc__ = StoreBase.__doc__
