"""What differs between database backends, in one interface; one file per backend.

A backend is a :class:`Dialect` subclass registered in :data:`DIALECTS` under its
SQLAlchemy backend name: :mod:`memberlab.store._sqlite` and
:mod:`memberlab.store._postgres`. Everything else in the store is portable SQLAlchemy
Core (or driver SQL with :attr:`Dialect.placeholder`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from memberlab._errors import DataValidationError

if TYPE_CHECKING:
    from memberlab.store._base import StoreBase
    from memberlab.store._group import Rows

__all__ = ["DIALECTS", "Dialect", "dialect_for"]


class Dialect:
    """The backend-specific parts of the store."""

    name: ClassVar[str]
    #: the DB-API driver's parameter placeholder, for driver-level SQL
    placeholder: ClassVar[str] = "%s"

    def create_engine(
        self, url: sa.URL, *, pool_size: int, sqlite_synchronous: str
    ) -> sa.Engine:  # pragma: no cover - every backend implements it
        raise NotImplementedError

    def write_lock(self) -> threading.RLock | None:
        """A process-wide lock writers queue on (``None``: the database handles it)."""
        return None

    def prepare(self, conn: sa.Connection, *, write: bool) -> None:
        """Set a connection up for a read or a write transaction (default: nothing)."""

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing`` / ``..._do_update``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the dialect holds beside the pool (default: nothing)."""

    def migration_lock(self, conn: sa.Connection) -> None:
        """Serialise concurrent migrations (default: the write transaction does)."""

    def log_decisions(
        self,
        store: StoreBase,
        dcols: str,
        icols: str,
        rows: Sequence[Rows],
        *,
        wait: bool = True,
    ) -> bool:
        """Insert decision rows and their impression rows in one transaction (the hot
        path; ``rows`` holds ``(decision row, impression rows)`` per decision).

        With ``wait=False`` a backend with one writer at a time (SQLite) returns False,
        having written nothing, when another connection holds the write lock; otherwise
        (and always here: the database takes concurrent writers) True once committed.
        """
        ph = self.placeholder
        drows = [d for d, _ in rows]
        irows = [i for _, imps in rows for i in imps]
        with store._tx() as conn:
            values = ", ".join([ph] * len(drows[0]))  # as many as _decision_rows fills
            conn.exec_driver_sql(f"INSERT INTO {dcols} VALUES ({values})", drows)
            if irows:
                conn.exec_driver_sql(f"INSERT INTO {icols} VALUES ({', '.join([ph] * 9)})", irows)
        return True

    def events_sql(self, ecols: str) -> str:
        """The driver INSERT of one event row that skips an event id already stored."""
        n = ecols.count(",") + 1
        return (
            f"INSERT INTO {ecols} VALUES ({', '.join([self.placeholder] * n)}) "
            "ON CONFLICT (event_id) DO NOTHING"
        )

    def add_events(
        self,
        store: StoreBase,
        ecols: str,
        batches: Sequence[Sequence[tuple[Any, ...]]],
        *,
        wait: bool = True,
    ) -> list[int] | None:
        """Insert event rows (in ``ecols`` order, :data:`memberlab.store._ledger._ECOLS`), a
        batch per request, in one transaction, skipping any event id already stored;
        returns the rows each batch added (in order: an id twice, in one batch or in
        two, counts for the first). ``wait=False`` as :meth:`log_decisions`."""
        sql = self.events_sql(ecols)
        with store._tx() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                return [_insert_count(cur, sql, rows) for rows in batches]
            finally:
                cur.close()


def _insert_count(cur: Any, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Rows inserted by one INSERT per row (a DB-API ``executemany`` sums ``rowcount``
    over its rows in sqlite3 and in psycopg 3; an ``ON CONFLICT DO NOTHING`` skip adds 0)."""
    if not rows:
        return 0
    cur.executemany(sql, rows)
    return int(cur.rowcount)


DIALECTS: dict[str, type[Dialect]] = {}


def dialect_for(url: sa.URL) -> Dialect:
    """The dialect of a URL's backend, or :class:`DataValidationError` naming the known."""
    from memberlab.store import _postgres, _sqlite  # noqa: F401 - they register themselves

    cls = DIALECTS.get(url.get_backend_name())
    if cls is None:
        raise DataValidationError(
            f"database URL {url.render_as_string(hide_password=True)!r} is neither "
            "SQLite nor PostgreSQL."
        )
    return cls()
