"""Durable state of the decision service: SQLite by default, PostgreSQL at scale.

The store holds decisions, events, items, the pending-feedback ledger, policy snapshots
(opaque bytes, versioned) and API keys (hashed). It knows nothing of the models'
mathematics and nothing of HTTP.
"""

from memberlab.store._schema import SCHEMA_VERSION
from memberlab.store._store import (
    SCOPES,
    ApiKeyRecord,
    DecisionRecord,
    DueImpression,
    EvaluationRecord,
    EventRecord,
    ExperimentDecisions,
    ItemRecord,
    Snapshot,
    StaleSnapshotError,
    Store,
    StoreStats,
    data_dir,
    default_database_url,
    display_url,
    normalize_url,
)

__all__ = [
    "SCHEMA_VERSION",
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
