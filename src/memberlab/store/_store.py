"""The :class:`Store`: decisions, events, items, the pending ledger, snapshots, API keys.

SQLAlchemy Core over SQLite (WAL, the default) or PostgreSQL (psycopg). The store knows
nothing of the models' mathematics: snapshots are opaque bytes, contexts and attributes
are JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from memberlab._errors import (
    DataValidationError,
    MissingDependencyError,
    SchemaVersionError,
    StaleSnapshotError,
    StoreUnavailableError,
)
from memberlab.store import _schema as s

__all__ = [
    "SCOPES",
    "ApiKeyRecord",
    "DecisionRecord",
    "DueImpression",
    "EventRecord",
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

log = logging.getLogger(__name__)

SCOPES = ("decide", "admin")
_EVENT_CHUNK = 500
_KEY_PREFIX = "mlk"


# Hot-path statements are built once (building a statement costs more than running it).
_LATEST_VERSION = sa.select(sa.func.max(s.snapshots.c.version)).where(
    s.snapshots.c.kind == sa.bindparam("kind"), s.snapshots.c.space == sa.bindparam("space")
)
_KEY_SCOPE = sa.select(s.api_keys.c.scope, s.api_keys.c.revoked).where(
    s.api_keys.c.key_hash == sa.bindparam("key_hash")
)
_GET_DECISIONS = sa.select(s.decisions).where(
    s.decisions.c.decision_id.in_(sa.bindparam("ids", expanding=True))
)


_SQLITE_BUSY_MS = 2
_SQLITE_LOCK_WAIT = 30.0


def _begin_immediate(conn: sa.Connection) -> None:
    """Take SQLite's write lock, polling every 0.2-2 ms for up to 30 s."""
    deadline = time.monotonic() + _SQLITE_LOCK_WAIT
    pause = 0.0002
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)


def data_dir() -> Path:
    """The per-user data directory of memberlab, the same for every command.

    ``$MEMBERLAB_DATA_DIR`` if set (and not empty); else ``$XDG_DATA_HOME/memberlab``;
    else ``~/.local/share/memberlab``. It never depends on the working directory.
    """
    explicit = os.environ.get("MEMBERLAB_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "memberlab").resolve()


def default_database_url() -> str:
    """The SQLite file ``memberlab.db`` in :func:`data_dir`."""
    return f"sqlite:///{data_dir() / 'memberlab.db'}"


def display_url(url: str | None) -> str:
    """The database URL as shown to people: the default resolved, the password masked.

    >>> display_url("postgresql://ann:secret@db:5432/prod")
    'postgresql+psycopg://ann:***@db:5432/prod'
    """
    return sa.make_url(normalize_url(url)).render_as_string(hide_password=True)


def normalize_url(url: str | None) -> str:
    """Resolve the default and select the psycopg driver for PostgreSQL URLs.

    >>> normalize_url("postgresql://u@h:5432/db")
    'postgresql+psycopg://u@h:5432/db'
    >>> normalize_url("postgres://u@h/db")
    'postgresql+psycopg://u@h/db'
    """
    if not url:
        return default_database_url()
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if "://" not in url:  # a bare path means a SQLite file
        return f"sqlite:///{Path(url).resolve()}"
    return url


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
    """A logged decision; ``served`` is the list of item ids (callouts) or the layout."""

    decision_id: str
    kind: str
    space: str
    context: dict[str, Any]
    served: Any
    policy_version: int
    seed: int
    ts: float
    ts_client: bool = False


@dataclass(frozen=True, slots=True)
class EventRecord:
    event_id: str
    decision_id: str
    item_id: str
    type: str
    value: float | None
    ts: float
    ts_client: bool = False


@dataclass(frozen=True, slots=True)
class DueImpression:
    """An impression whose attribution window closed, with its reward."""

    decision_id: str
    item_id: str
    space: str
    context: dict[str, Any]
    served: Any
    reward: float


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


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's own first line of a database error (no SQL, no SQLAlchemy footer)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Store:
    """Durable state of the decision service.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL. ``None`` means the default SQLite file (see
        :func:`default_database_url`); ``postgresql://...`` uses psycopg.
    migrate : bool, default True
        Create or upgrade the schema on open.
    sqlite_synchronous : {"NORMAL", "FULL"}, default "NORMAL"
        With WAL, ``NORMAL`` survives a crash of any process (``kill -9``);
        ``FULL`` also survives power loss, at a cost per commit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        migrate: bool = True,
        sqlite_synchronous: str = "NORMAL",
        pool_size: int = 8,
    ) -> None:
        self.url = normalize_url(url)
        parsed = sa.make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            if sqlite_synchronous.upper() not in ("NORMAL", "FULL"):
                raise DataValidationError(
                    f"sqlite_synchronous == {sqlite_synchronous!r}, must be NORMAL or FULL."
                )
            self.engine = sa.create_engine(
                parsed,
                connect_args={"timeout": 30.0, "check_same_thread": False},
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            sync = sqlite_synchronous.upper()

            @sa.event.listens_for(self.engine, "connect")
            def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
                dbapi_conn.isolation_level = None  # transactions are begun explicitly below
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={sync}")
                # SQLite's own busy handler sleeps in steps of up to 100 ms; writers
                # instead retry BEGIN IMMEDIATE in sub-millisecond steps (below).
                cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
                cur.close()

            @sa.event.listens_for(self.engine, "begin")
            def _on_begin(conn: sa.Connection) -> None:
                mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
                if mode == "IMMEDIATE":
                    _begin_immediate(conn)
                elif mode != "NONE":
                    conn.exec_driver_sql(f"BEGIN {mode}")

        elif self.dialect == "postgresql":
            try:
                self.engine = sa.create_engine(
                    parsed, pool_size=pool_size, max_overflow=pool_size, pool_recycle=300
                )
            except ImportError as exc:
                raise MissingDependencyError(
                    f"database URL {display_url(self.url)!r} needs the PostgreSQL driver "
                    f'psycopg ({exc}); install it with: pip install "memberlab[postgres]"'
                ) from None
        else:
            raise DataValidationError(
                f"database URL {parsed.render_as_string(hide_password=True)!r} is neither "
                "SQLite nor PostgreSQL."
            )
        self._ph = "?" if self.dialect == "sqlite" else "%s"  # the driver's placeholder
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        if migrate:
            try:
                self.migrate()
            except sa.exc.OperationalError as exc:
                self.engine.dispose()
                raise StoreUnavailableError(
                    f"cannot open the database {display_url(self.url)!r}: {_reason(exc)}"
                ) from None

    def __repr__(self) -> str:
        shown = sa.make_url(self.url).render_as_string(hide_password=True)
        return f"Store({shown!r})"

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sa.Connection]:
        if write and self._write_lock is not None:
            # SQLite has one writer at a time: threads of this process queue here (no
            # CPU spent), and only the head of the queue polls for the database lock.
            with self._write_lock, self._tx_inner(write=True) as conn:
                yield conn
        else:
            with self._tx_inner(write=write) as conn:
                yield conn

    @contextmanager
    def _tx_inner(self, *, write: bool) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # writers take the lock up front (no deadlocked upgrades); a lone read
                # needs no transaction at all (autocommit reads see the latest commit)
                conn.execution_options(sqlite_begin="IMMEDIATE" if write else "NONE")
            with conn.begin():
                yield conn

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "sqlite":
            return sqlite_dialect.insert(table)
        return pg_dialect.insert(table)

    # -- schema -------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version stored in the database (0 for an empty database)."""
        with self._tx(write=False) as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return 0
            v = conn.execute(sa.select(s.schema_version.c.version)).scalar()
            return int(v or 0)

    def migrate(self) -> int:
        """Create or upgrade the schema to :data:`SCHEMA_VERSION`; returns the version."""
        with self._tx() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7142001)"))
            s.schema_version.create(conn, checkfirst=True)
            row = conn.execute(sa.select(s.schema_version.c.version)).scalar()
            current = int(row or 0)
            if current > s.SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"database schema version {current} is newer than this release's "
                    f"{s.SCHEMA_VERSION}; upgrade memberlab."
                )
            for v in range(current, s.SCHEMA_VERSION):
                log.info("migrating schema %d -> %d", v, v + 1)
                s.MIGRATIONS[v](conn)
            if current < s.SCHEMA_VERSION:
                if row is None:
                    conn.execute(
                        sa.insert(s.schema_version).values(
                            id=1, version=s.SCHEMA_VERSION, applied_at=time.time()
                        )
                    )
                else:
                    conn.execute(
                        sa.update(s.schema_version).values(
                            version=s.SCHEMA_VERSION, applied_at=time.time()
                        )
                    )
        return s.SCHEMA_VERSION

    # -- API keys -----------------------------------------------------------------------

    def create_api_key(self, scope: str, *, label: str = "") -> str:
        """Create a key with ``scope`` in ``SCOPES``; returns it (only its hash is kept)."""
        if scope not in SCOPES:
            raise DataValidationError(f"scope == {scope!r}, must be one of {list(SCOPES)}.")
        key = f"{_KEY_PREFIX}_{scope}_{secrets.token_urlsafe(24)}"
        with self._tx() as conn:
            conn.execute(
                sa.insert(s.api_keys).values(
                    key_hash=_hash_key(key),
                    prefix=key[:16],
                    scope=scope,
                    label=label,
                    created_at=time.time(),
                    revoked=False,
                )
            )
        return key

    def api_key_scope(self, key: str) -> str | None:
        """The scope of a valid, unrevoked key; ``None`` otherwise."""
        with self._tx(write=False) as conn:
            row = conn.execute(_KEY_SCOPE, {"key_hash": _hash_key(key)}).first()
        if row is None or row.revoked:
            return None
        return str(row.scope)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key (never the key itself: its prefix, scope, label and state), oldest first."""
        k = s.api_keys
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(k.c.prefix, k.c.scope, k.c.label, k.c.created_at, k.c.revoked).order_by(
                    k.c.created_at, k.c.prefix
                )
            ).all()
        return [
            ApiKeyRecord(r.prefix, r.scope, r.label, float(r.created_at), bool(r.revoked))
            for r in rows
        ]

    def revoke_api_key(self, key: str) -> int:
        """Revoke a key, given in full or by the prefix :meth:`list_api_keys` shows.

        Returns the number of keys revoked (0: no such key, or already revoked). A prefix
        that matches several keys is refused with :class:`DataValidationError`.
        """
        k = s.api_keys
        with self._tx() as conn:
            if key.startswith(_KEY_PREFIX + "_") and len(key) > 16:
                where = k.c.key_hash == _hash_key(key)
            else:
                n = conn.execute(
                    sa.select(sa.func.count()).select_from(k).where(k.c.prefix == key)
                ).scalar()
                if int(n or 0) > 1:
                    raise DataValidationError(
                        f"key prefix {key!r} matches {n} keys; give the whole key."
                    )
                where = k.c.prefix == key
            r = conn.execute(sa.update(k).where(where, k.c.revoked.is_(False)).values(revoked=True))
        return int(r.rowcount or 0)

    # -- items --------------------------------------------------------------------------

    def upsert_item(
        self, item_id: str, attributes: Mapping[str, Any], *, kind: str = "callouts"
    ) -> bool:
        """Create or update (and reactivate) an item; returns True if it was created."""
        now = time.time()
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(s.items.c.item_id).where(
                    s.items.c.kind == kind, s.items.c.item_id == item_id
                )
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(s.items).values(
                        kind=kind,
                        item_id=item_id,
                        attributes=dict(attributes),
                        active=True,
                        created_at=now,
                        updated_at=now,
                    )
                )
                return True
            conn.execute(
                sa.update(s.items)
                .where(s.items.c.kind == kind, s.items.c.item_id == item_id)
                .values(attributes=dict(attributes), active=True, updated_at=now)
            )
            return False

    def retire_item(self, item_id: str, *, kind: str = "callouts") -> bool:
        """Mark an item retired; returns False if no such item exists."""
        with self._tx() as conn:
            r = conn.execute(
                sa.update(s.items)
                .where(s.items.c.kind == kind, s.items.c.item_id == item_id)
                .values(active=False, updated_at=time.time())
            )
        return bool(r.rowcount)

    def list_items(self, *, kind: str = "callouts", active_only: bool = False) -> list[ItemRecord]:
        q = sa.select(s.items).where(s.items.c.kind == kind).order_by(s.items.c.item_id)
        if active_only:
            q = q.where(s.items.c.active.is_(True))
        with self._tx(write=False) as conn:
            rows = conn.execute(q).all()
        return [
            ItemRecord(r.item_id, dict(r.attributes), bool(r.active), r.created_at, r.updated_at)
            for r in rows
        ]

    # -- decisions and events -----------------------------------------------------------

    def log_decision(
        self,
        decision: DecisionRecord,
        impressions: Sequence[tuple[str, float | None]],
        *,
        window: float,
    ) -> None:
        """Log a decision and put its impressions in the pending ledger, in one commit.

        ``impressions`` holds ``(item_id, propensity)`` pairs; a layout decision has one
        impression with item id ``""``.
        """
        now = time.time()
        # The hottest write of the service: plain SQL through the driver (one prepared
        # statement each), skipping SQLAlchemy's per-call statement handling.
        ph = self._ph
        context = json.dumps(decision.context, separators=(",", ":"))
        served = json.dumps(decision.served, separators=(",", ":"))
        drow = (
            decision.decision_id,
            decision.kind,
            decision.space,
            context,
            served,
            decision.policy_version,
            decision.seed,
            decision.ts,
            decision.ts_client,
            now,
        )
        irows = [
            (
                decision.decision_id,
                item_id,
                decision.kind,
                decision.space,
                prop,
                decision.ts,
                decision.ts + window,
                0,
                decision.policy_version,
            )
            for item_id, prop in impressions
        ]
        dcols = (
            "decisions (decision_id, kind, space, context, served, policy_version, seed, ts, "
            "ts_client, created_at)"
        )
        icols = (
            "impressions (decision_id, item_id, kind, space, propensity, ts, deadline, status, "
            "policy_version)"
        )
        if self.dialect == "postgresql":
            # One statement, one round trip, atomic on its own: autocommit.
            values = ", ".join([f"({', '.join([ph] * 9)})"] * len(irows))
            sql = (
                f"WITH d AS (INSERT INTO {dcols} VALUES ({', '.join([ph] * 10)})) "
                f"INSERT INTO {icols} VALUES {values}"
            )
            params = drow + tuple(v for row in irows for v in row)
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql(sql, params)
            return
        with self._tx() as conn:
            conn.exec_driver_sql(f"INSERT INTO {dcols} VALUES ({', '.join([ph] * 10)})", drow)
            conn.exec_driver_sql(f"INSERT INTO {icols} VALUES ({', '.join([ph] * 9)})", irows)

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The logged decisions among ``decision_ids`` (missing ids are left out)."""
        ids = sorted(set(decision_ids))
        out: dict[str, DecisionRecord] = {}
        with self._tx(write=False) as conn:
            for i in range(0, len(ids), _EVENT_CHUNK):
                rows = conn.execute(_GET_DECISIONS, {"ids": ids[i : i + _EVENT_CHUNK]}).all()
                for r in rows:
                    out[r.decision_id] = DecisionRecord(
                        r.decision_id,
                        r.kind,
                        r.space,
                        r.context,
                        r.served,
                        r.policy_version,
                        r.seed,
                        r.ts,
                        bool(r.ts_client),
                    )
        return out

    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        """Insert events, ignoring any event id seen before; returns (accepted, duplicates).

        The insert is committed before this returns, so an acknowledged event is durable.
        """
        now = time.time()
        rows: dict[str, dict[str, Any]] = {}
        for e in events:
            rows.setdefault(
                e.event_id,
                {
                    "event_id": e.event_id,
                    "decision_id": e.decision_id,
                    "item_id": e.item_id,
                    "type": e.type,
                    "value": e.value,
                    "ts": e.ts,
                    "ts_client": e.ts_client,
                    "received_at": now,
                },
            )
        values = list(rows.values())
        stmt = self._insert(s.events).on_conflict_do_nothing().returning(s.events.c.event_id)
        with self._tx() as conn:
            accepted = len(conn.execute(stmt, values).all()) if values else 0
        return accepted, len(events) - accepted

    # -- the pending ledger -------------------------------------------------------------

    def data_clock(self) -> float | None:
        """The latest client-supplied timestamp of any decision or event, if any."""
        with self._tx(write=False) as conn:
            a = conn.execute(
                sa.select(sa.func.max(s.decisions.c.ts)).where(s.decisions.c.ts_client.is_(True))
            ).scalar()
            b = conn.execute(
                sa.select(sa.func.max(s.events.c.ts)).where(s.events.c.ts_client.is_(True))
            ).scalar()
        vals = [float(v) for v in (a, b) if v is not None]
        return max(vals) if vals else None

    def due_impressions(
        self, kind: str, now: float, *, early_hold: float = 0.0, limit: int = 20_000
    ) -> list[DueImpression]:
        """Pending impressions whose attribution window closed by ``now``, with rewards.

        The same semantics as :class:`memberlab.callouts.PendingLedger`: an event joins
        its impression when its time lies in ``[t - early_hold, t + window]``; the reward
        is the largest joined event value (an event without a value counts 1), or 0 when
        no event joined. Oldest windows first, at most ``limit`` of them.
        """
        i, d, e = s.impressions, s.decisions, s.events
        reward = (
            sa.select(sa.func.max(sa.func.coalesce(e.c.value, 1.0)))
            .where(
                e.c.decision_id == i.c.decision_id,
                e.c.item_id == i.c.item_id,
                e.c.ts >= i.c.ts - early_hold,
                e.c.ts <= i.c.deadline,
            )
            .scalar_subquery()
        )
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(
                    i.c.decision_id,
                    i.c.item_id,
                    i.c.space,
                    d.c.context,
                    d.c.served,
                    reward.label("reward"),
                )
                .select_from(i.join(d, d.c.decision_id == i.c.decision_id))
                .where(i.c.status == 0, i.c.kind == kind, i.c.deadline <= now)
                .order_by(i.c.deadline, i.c.decision_id, i.c.item_id)
                .limit(limit)
            ).all()
        return [
            DueImpression(
                r.decision_id,
                r.item_id,
                r.space,
                r.context,
                r.served,
                0.0 if r.reward is None else float(r.reward),
            )
            for r in rows
        ]

    def outcome_counts(self, kind: str, space: str = "") -> dict[str, tuple[int, int]]:
        """Closed impressions and positives per item id: ``{item: (closed, positives)}``."""
        i = s.impressions
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(
                    i.c.item_id,
                    sa.func.count(),
                    sa.func.sum(sa.case((i.c.reward > 0, 1), else_=0)),
                )
                .where(i.c.kind == kind, i.c.space == space, i.c.status == 1)
                .group_by(i.c.item_id)
            ).all()
        return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    def next_deadline(self, kind: str | None = None) -> float | None:
        """When the earliest open attribution window closes (``None``: none is open)."""
        i = s.impressions
        q = sa.select(sa.func.min(i.c.deadline)).where(i.c.status == 0)
        if kind:
            q = q.where(i.c.kind == kind)
        with self._tx(write=False) as conn:
            v = conn.execute(q).scalar()
        return None if v is None else float(v)

    def retire_space(self, kind: str, space: str) -> int:
        """Delete the snapshots of ``(kind, space)`` and drop its open impressions.

        Logged decisions and events stay in the log; dropped impressions get status 2
        (never trained on). Returns the number dropped.
        """
        i, t = s.impressions, s.snapshots
        with self._tx() as conn:
            r = conn.execute(
                sa.update(i)
                .where(i.c.kind == kind, i.c.space == space, i.c.status == 0)
                .values(status=2, closed_at=time.time())
            )
            conn.execute(sa.delete(t).where(t.c.kind == kind, t.c.space == space))
        return int(r.rowcount or 0)

    def closed_impressions(self, kind: str, space: str = "") -> list[DueImpression]:
        """Every impression whose feedback has been applied, in the order it closed."""
        i, d = s.impressions, s.decisions
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(
                    i.c.decision_id, i.c.item_id, i.c.space, d.c.context, d.c.served, i.c.reward
                )
                .select_from(i.join(d, d.c.decision_id == i.c.decision_id))
                .where(i.c.status == 1, i.c.kind == kind, i.c.space == space)
                .order_by(i.c.closed_at, i.c.ts)
            ).all()
        return [
            DueImpression(r.decision_id, r.item_id, r.space, r.context, r.served, float(r.reward))
            for r in rows
        ]

    def traffic(
        self, kind: str, *, bucket: float = 60.0, limit: int = 50_000
    ) -> list[tuple[float, str, int]]:
        """Impressions served per time bucket and item: ``(bucket start, item, count)``,
        over the most recent ``limit`` impressions (oldest bucket first)."""
        i = s.impressions
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(i.c.ts, i.c.item_id, i.c.space)
                .where(i.c.kind == kind)
                .order_by(i.c.ts.desc())
                .limit(limit)
            ).all()
        counts: dict[tuple[float, str], int] = {}
        for r in rows:
            key = (float(r.ts) // bucket * bucket, r.item_id or r.space)
            counts[key] = counts.get(key, 0) + 1
        return sorted((b, item, n) for (b, item), n in counts.items())

    # -- snapshots ----------------------------------------------------------------------

    def latest_version(self, kind: str, space: str = "") -> int:
        """Version of the newest snapshot (0 if none): one indexed lookup, cheap to poll."""
        with self._tx(write=False) as conn:
            v = conn.execute(_LATEST_VERSION, {"kind": kind, "space": space}).scalar()
        return int(v or 0)

    def load_snapshot(self, kind: str, space: str = "") -> Snapshot | None:
        t = s.snapshots
        with self._tx(write=False) as conn:
            r = conn.execute(
                sa.select(t)
                .where(t.c.kind == kind, t.c.space == space)
                .order_by(t.c.version.desc())
                .limit(1)
            ).first()
        if r is None:
            return None
        return Snapshot(r.kind, r.space, r.version, bytes(r.data), r.spec, r.reason, r.created_at)

    def spaces(self, kind: str) -> list[str]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(s.snapshots.c.space).where(s.snapshots.c.kind == kind).distinct()
            ).all()
        return sorted(r.space for r in rows)

    def publish(
        self,
        kind: str,
        data: bytes,
        *,
        base_version: int,
        space: str = "",
        spec: Any = None,
        reason: str = "train",
        closed: Sequence[tuple[str, str, float]] = (),
        keep: int = 20,
    ) -> int:
        """Publish snapshot ``base_version + 1`` and close ``closed`` impressions, atomically.

        ``closed`` holds ``(decision_id, item_id, reward)``. Raises
        :class:`StaleSnapshotError` if that version already exists (another writer won).
        Old snapshots beyond the newest ``keep`` are deleted.
        """
        version = base_version + 1
        now = time.time()
        t = s.snapshots
        try:
            with self._tx() as conn:
                latest = conn.execute(
                    sa.select(sa.func.max(t.c.version)).where(t.c.kind == kind, t.c.space == space)
                ).scalar()
                if int(latest or 0) != base_version:
                    raise StaleSnapshotError(
                        f"snapshot {kind}/{space} is at version {latest}, not {base_version}."
                    )
                conn.execute(
                    sa.insert(t).values(
                        kind=kind,
                        space=space,
                        version=version,
                        data=data,
                        spec=spec,
                        reason=reason,
                        created_at=now,
                    )
                )
                ph = self._ph
                for k in range(0, len(closed), _EVENT_CHUNK):  # join on the primary key
                    chunk = closed[k : k + _EVENT_CHUNK]
                    rows = ", ".join([f"({ph}, {ph}, {ph})"] * len(chunk))
                    params: list[Any] = [v for did, iid, rw in chunk for v in (did, iid, rw)]
                    conn.exec_driver_sql(
                        f"WITH v(d, i, r) AS (VALUES {rows}) "
                        f"UPDATE impressions SET status = 1, reward = v.r, closed_at = {ph} "
                        "FROM v WHERE impressions.decision_id = v.d "
                        "AND impressions.item_id = v.i AND impressions.status = 0",
                        (*params, now),
                    )
                self._set_meta(conn, f"last_publish/{kind}", repr(now))
                conn.execute(
                    sa.delete(t).where(
                        t.c.kind == kind, t.c.space == space, t.c.version <= version - keep
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise StaleSnapshotError(f"snapshot {kind}/{space} v{version} exists.") from exc
        return version

    # -- leases (one trainer at a time) -------------------------------------------------

    def try_lease(self, holder: str, *, ttl: float = 30.0, name: str = "trainer") -> bool:
        """Take the named lease if it is free, expired or already ours (UPDATE ... WHERE)."""
        now = time.time()
        lt = s.leases
        with self._tx() as conn:
            r = conn.execute(
                sa.update(lt)
                .where(
                    lt.c.name == name,
                    sa.or_(lt.c.holder.is_(None), lt.c.expires_at < now, lt.c.holder == holder),
                )
                .values(holder=holder, expires_at=now + ttl)
            )
            if r.rowcount == 0:
                exists = conn.execute(sa.select(lt.c.name).where(lt.c.name == name)).first()
                if exists is None:
                    conn.execute(
                        sa.insert(lt).values(name=name, holder=holder, expires_at=now + ttl)
                    )
                    return True
        return bool(r.rowcount)

    def release_lease(self, holder: str, *, name: str = "trainer") -> None:
        lt = s.leases
        with self._tx() as conn:
            conn.execute(
                sa.update(lt)
                .where(lt.c.name == name, lt.c.holder == holder)
                .values(holder=None, expires_at=0.0)
            )

    # -- meta and statistics ------------------------------------------------------------

    def _set_meta(self, conn: sa.Connection, key: str, value: str) -> None:
        stmt = self._insert(s.meta).values(key=key, value=value)
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            self._set_meta(conn, key, value)

    def get_meta(self, key: str) -> str | None:
        with self._tx(write=False) as conn:
            v = conn.execute(sa.select(s.meta.c.value).where(s.meta.c.key == key)).scalar()
        return None if v is None else str(v)

    def stats(self, kind: str | None = None, *, now: float | None = None) -> StoreStats:
        """Counts read from the database (``kind=None``: all kinds)."""
        d, e, i, t = s.decisions, s.events, s.impressions, s.snapshots
        with self._tx(write=False) as conn:

            def count(table: sa.Table, *where: Any) -> int:
                q = sa.select(sa.func.count()).select_from(table)
                if where:
                    q = q.where(*where)
                return int(conn.execute(q).scalar() or 0)

            kd = [d.c.kind == kind] if kind else []
            ki = [i.c.kind == kind] if kind else []
            n_dec = count(d, *kd)
            n_ev = count(e)
            pending = count(i, i.c.status == 0, *ki)
            closed = count(i, i.c.status == 1, *ki)
            positives = count(i, i.c.status == 1, i.c.reward > 0, *ki)
            vq = sa.select(sa.func.max(t.c.version)).where(t.c.space == "")
            if kind:
                vq = vq.where(t.c.kind == kind)
            version = int(conn.execute(vq).scalar() or 0)
            extra: dict[str, float] = {}
            if now is not None:
                oldest = conn.execute(
                    sa.select(sa.func.min(i.c.deadline)).where(
                        i.c.status == 0, i.c.deadline <= now, *ki
                    )
                ).scalar()
                extra["trainer_lag_seconds"] = 0.0 if oldest is None else now - float(oldest)
        return StoreStats(n_dec, n_ev, pending, closed, positives, version, extra)
