"""The core of the store: engine, transactions, schema, meta and statistics.

The store's methods live in one mixin per concern (:mod:`._keys`, :mod:`._items`,
:mod:`._ledger`, :mod:`._snapshots`, :mod:`._lease`) over this base; what differs
between backends is in :mod:`._dialect` (one file per backend).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from memberlab._errors import SchemaVersionError, StoreUnavailableError
from memberlab.store import _schema as s
from memberlab.store._dialect import Dialect, dialect_for
from memberlab.store._records import StoreStats
from memberlab.store._urls import display_url, normalize_url

__all__ = ["StoreBase"]

log = logging.getLogger("memberlab.store")


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's own first line of a database error (no SQL, no SQLAlchemy footer)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


class StoreBase:
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
        self.sql: Dialect = dialect_for(parsed)
        self.dialect = self.sql.name
        self.engine = self.sql.create_engine(
            parsed, pool_size=pool_size, sqlite_synchronous=sqlite_synchronous
        )
        self._write_lock = self.sql.write_lock()
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
        self.sql.close()
        self.engine.dispose()

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
            self.sql.prepare(conn, write=write)
            with conn.begin():
                yield conn

    def _insert(self, table: sa.Table) -> Any:
        return self.sql.insert(table)

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
            self.sql.migration_lock(conn)
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
