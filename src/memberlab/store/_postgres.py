"""The PostgreSQL backend (psycopg 3): pooled connections, one-round-trip decision logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect

from memberlab._errors import MissingDependencyError
from memberlab.store._dialect import DIALECTS, Dialect

if TYPE_CHECKING:
    from memberlab.store._base import StoreBase
    from memberlab.store._group import Rows

__all__ = ["PostgresDialect"]


class PostgresDialect(Dialect):
    name = "postgresql"
    placeholder = "%s"

    def create_engine(self, url: sa.URL, *, pool_size: int, sqlite_synchronous: str) -> sa.Engine:
        try:
            return sa.create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=300
            )
        except ImportError as exc:
            raise MissingDependencyError(
                f"database URL {url.render_as_string(hide_password=True)!r} needs the "
                f"PostgreSQL driver psycopg ({exc}); install it with: "
                'pip install "memberlab[postgres]"'
            ) from None

    def insert(self, table: sa.Table) -> Any:
        return pg_dialect.insert(table)

    def migration_lock(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7142001)"))

    def log_decisions(
        self,
        store: StoreBase,
        dcols: str,
        icols: str,
        rows: Sequence[Rows],
        *,
        wait: bool = True,
    ) -> bool:
        # PostgreSQL has no database-wide writer lock: wait or not, the write goes ahead
        if len(rows) > 1 or not rows[0][1]:  # a group commit: one transaction
            return super().log_decisions(store, dcols, icols, rows)
        # One decision: one statement, one round trip, atomic on its own (autocommit).
        (drow, irows), ph = rows[0], self.placeholder
        values = ", ".join([f"({', '.join([ph] * 9)})"] * len(irows))
        sql = (
            f"WITH d AS (INSERT INTO {dcols} VALUES ({', '.join([ph] * len(drow))})) "
            f"INSERT INTO {icols} VALUES {values}"
        )
        params = tuple(drow) + tuple(v for row in irows for v in row)
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(sql, params)
        return True


DIALECTS[PostgresDialect.name] = PostgresDialect
