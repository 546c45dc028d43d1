"""Benefit callouts: which message to show a shopper.

A :class:`Catalog` of items with attributes, a Thompson-sampling
:class:`CalloutRecommender` (probit ADF over item attributes, context and their crosses,
with empirical-Bayes group priors), a :class:`PendingLedger` for delayed feedback and a
simulator with ground truth (:mod:`memberlab.callouts.simulator`).
"""

from memberlab.callouts.catalog import DEFAULT_EDGES, AttributeSpec, Catalog
from memberlab.callouts.ledger import EventStatus, LedgerStats, PendingLedger
from memberlab.callouts.recommender import (
    BIAS_GROUP,
    ITEM_GROUP,
    SNAPSHOT_SCHEMA_VERSION,
    BatchDecision,
    CalloutRecommender,
    Decision,
    Feedback,
    RefitResult,
    ServedItem,
)

__all__ = [
    "BIAS_GROUP",
    "DEFAULT_EDGES",
    "ITEM_GROUP",
    "SNAPSHOT_SCHEMA_VERSION",
    "AttributeSpec",
    "BatchDecision",
    "CalloutRecommender",
    "Catalog",
    "Decision",
    "EventStatus",
    "Feedback",
    "LedgerStats",
    "PendingLedger",
    "RefitResult",
    "ServedItem",
]
