"""Tables of the decision service and the migrations that create them.

The schema is owned by memberlab: :data:`SCHEMA_VERSION` is stored in the
``schema_version`` table and each entry of :data:`MIGRATIONS` moves a database from one
version to the next inside one transaction.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "metadata"]

metadata = sa.MetaData()

# BIGINT on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there).
_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("applied_at", sa.Float(53), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("label", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float(53), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("item_id", sa.String(200), primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float(53), nullable=False),
    sa.Column("updated_at", sa.Float(53), nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("decision_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("space", sa.String(200), nullable=False, default=""),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("served", sa.JSON, nullable=False),
    sa.Column("policy_version", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.Float(53), nullable=False),
    sa.Column("ts_client", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float(53), nullable=False),
    # Added in schema 2: the unit (shopper or member) the request named, its experiment
    # arm ("policy" or "holdout"; NULL before experiments existed) and the candidate list
    # the policy chose from (NULL: every active item at decision time).
    sa.Column("unit_id", sa.String(200), nullable=True),
    sa.Column("assignment", sa.String(16), nullable=True),
    sa.Column("candidates", sa.JSON, nullable=True),
)
_ix_decisions_unit = sa.Index("ix_decisions_unit", decisions.c.kind, decisions.c.unit_id)
sa.Index(
    "ix_decisions_client_ts",
    decisions.c.ts,
    sqlite_where=decisions.c.ts_client,
    postgresql_where=decisions.c.ts_client,
)

# One row per served item (callouts) or per decision (layouts, item_id ""): the pending
# ledger. status 0 = window open, 1 = closed with ``reward``, 2 = dropped (space retired).
impressions = sa.Table(
    "impressions",
    metadata,
    sa.Column("decision_id", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("space", sa.String(200), nullable=False, default=""),
    sa.Column("propensity", sa.Float(53), nullable=True),
    sa.Column("ts", sa.Float(53), nullable=False),
    sa.Column("deadline", sa.Float(53), nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False, default=0),
    sa.Column("reward", sa.Float(53), nullable=True),
    sa.Column("closed_at", sa.Float(53), nullable=True),
    sa.Column("policy_version", sa.Integer, nullable=True),
)
sa.Index("ix_impressions_pending", impressions.c.status, impressions.c.deadline)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _BigInt, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(200), nullable=False, unique=True),
    sa.Column("decision_id", sa.String(64), nullable=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("value", sa.Float(53), nullable=True),
    # Added in schema 2: the plan a conversion event names (NULL for clicks).
    sa.Column("plan", sa.String(200), nullable=True),
    sa.Column("ts", sa.Float(53), nullable=False),
    sa.Column("ts_client", sa.Boolean, nullable=False),
    sa.Column("received_at", sa.Float(53), nullable=False),
)
sa.Index("ix_events_decision", events.c.decision_id, events.c.item_id)
sa.Index(
    "ix_events_client_ts",
    events.c.ts,
    sqlite_where=events.c.ts_client,
    postgresql_where=events.c.ts_client,
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("space", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("spec", sa.JSON, nullable=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float(53), nullable=False),
)

# Added in schema 2: results of offline evaluations (off-policy estimates, candidate
# comparisons, readouts) recorded for the dashboard; ``result`` is the command's JSON.
evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("seq", _BigInt, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float(53), nullable=False),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=True),
    sa.Column("expires_at", sa.Float(53), nullable=False, default=0.0),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    """Initial schema."""
    metadata.create_all(conn, checkfirst=True)
    conn.execute(sa.insert(leases), [{"name": "trainer", "holder": None, "expires_at": 0.0}])


def _v2(conn: sa.Connection) -> None:
    """Experiment arms and candidate lists on decisions, plans on conversion events, and
    the ``evaluations`` table.

    A database created at version 2 already has these columns (``_v1`` creates the
    current tables), so only the missing ones are added.
    """
    added = {
        "decisions": [decisions.c.unit_id, decisions.c.assignment, decisions.c.candidates],
        "events": [events.c.plan],
    }
    inspector = sa.inspect(conn)
    for table, columns in added.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column.name not in have:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column.name} {kind}")
    evaluations.create(conn, checkfirst=True)
    have_ix = {ix["name"] for ix in inspector.get_indexes("decisions")}
    if "ix_decisions_unit" not in have_ix:
        _ix_decisions_unit.create(conn)


# MIGRATIONS[i] moves the schema from version i to version i + 1.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)
