"""The SQLite backend: WAL, one writer at a time, sub-millisecond lock polling, and WAL
checkpoints off the hot write path."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from memberlab._errors import DataValidationError, StoreUnavailableError
from memberlab.store._dialect import DIALECTS, Dialect, _insert_count

if TYPE_CHECKING:
    from memberlab.store._base import StoreBase
    from memberlab.store._group import Rows

__all__ = ["SqliteDialect"]

T = TypeVar("T")

_SQLITE_BUSY_MS = 2
_SQLITE_LOCK_WAIT = 30.0
#: the WAL size past which the checkpointer copies it back into the database (SQLite's
#: own automatic checkpoint runs at 1,000 pages, 4 MB at the default page size)
_WAL_CHECKPOINT_BYTES = 4 << 20
#: how often the checkpointer looks at the WAL's size
_WAL_CHECK_INTERVAL = 0.1

log = logging.getLogger("memberlab.store")


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


def _begin_immediate_raw(cur: sqlite3.Cursor, *, wait: bool) -> bool:
    """:func:`_begin_immediate` on a driver cursor; ``wait=False``: one try, False if
    another connection holds the lock."""
    deadline = time.monotonic() + _SQLITE_LOCK_WAIT
    pause = 0.0002
    while True:
        try:
            cur.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            if not wait:
                return False
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)


class SqliteDialect(Dialect):
    name = "sqlite"
    placeholder = "?"

    def __init__(self) -> None:
        # the decision log's own driver connection (see log_decisions), used only under
        # the store's write lock
        self._raw: Any = None
        self._checkpointer: _Checkpointer | None = None

    def create_engine(self, url: sa.URL, *, pool_size: int, sqlite_synchronous: str) -> sa.Engine:
        db = url.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        sync = sqlite_synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise DataValidationError(
                f"sqlite_synchronous == {sqlite_synchronous!r}, must be NORMAL or FULL."
            )
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30.0, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun explicitly below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            # SQLite's own busy handler sleeps in steps of up to 100 ms; writers
            # instead retry BEGIN IMMEDIATE in sub-millisecond steps (below).
            cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode == "IMMEDIATE":
                _begin_immediate(conn)

            elif mode != "NONE":
                conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def write_lock(self) -> threading.RLock | None:
        # SQLite has one writer at a time: threads of this process queue here (no CPU
        # spent), and only the head of the queue polls for the database lock.
        return threading.RLock()

    def prepare(self, conn: sa.Connection, *, write: bool) -> None:
        # writers take the lock up front (no deadlocked upgrades); a lone read needs no
        # transaction at all (autocommit reads see the latest commit)
        conn.execution_options(sqlite_begin="IMMEDIATE" if write else "NONE")

    def insert(self, table: sa.Table) -> Any:
        return sqlite_dialect.insert(table)

    def log_decisions(
        self,
        store: StoreBase,
        dcols: str,
        icols: str,
        rows: Sequence[Rows],
        *,
        wait: bool = True,
    ) -> bool:
        def write(cur: sqlite3.Cursor) -> bool:
            cur.executemany(
                f"INSERT INTO {dcols} VALUES ({', '.join('?' * len(rows[0][0]))})",
                [d for d, _ in rows],
            )
            cur.executemany(
                f"INSERT INTO {icols} VALUES ({', '.join('?' * 9)})",
                [i for _, imps in rows for i in imps],
            )
            return True

        return self._raw_write(store, write, wait=wait, what="log the decision") is not None

    def add_events(
        self,
        store: StoreBase,
        ecols: str,
        batches: Sequence[Sequence[tuple[Any, ...]]],
        *,
        wait: bool = True,
    ) -> list[int] | None:
        sql = self.events_sql(ecols)

        def write(cur: sqlite3.Cursor) -> list[int]:
            return [_insert_count(cur, sql, rows) for rows in batches]

        return self._raw_write(store, write, wait=wait, what="record the events")

    def _raw_write(
        self,
        store: StoreBase,
        write: Callable[[sqlite3.Cursor], T],
        *,
        wait: bool,
        what: str,
    ) -> T | None:
        """``write(cursor)`` in one transaction on the driver connection kept for the hot
        writes; None, having written nothing, when ``wait=False`` and the lock is busy.

        The hot writes (decision logs, events) go straight through one driver connection,
        with no pool checkout, no SQLAlchemy events and no statement handling per call
        (a third of a lone decision's cost on a small machine)."""
        lock = store._write_lock
        assert lock is not None
        if not lock.acquire(blocking=wait):
            return None
        try:
            if self._raw is None:
                self._raw = self._hot_connection(store)
            cur = self._raw.cursor()
            try:
                if not _begin_immediate_raw(cur, wait=wait):
                    return None
                try:
                    out = write(cur)
                    cur.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        cur.execute("ROLLBACK")
                    raise
            finally:
                cur.close()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"cannot {what}: {exc}") from None
        finally:
            lock.release()
        return out

    def _hot_connection(self, store: StoreBase) -> Any:
        """The hot writes' connection, which never checkpoints the WAL itself.

        SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past
        1,000 pages: it copies the pages into the database file and fsyncs it, about
        16 ms of waiting for the disk on a small machine, every ~150 lone decisions at
        1,000 decisions/s, on the event loop the hot writes run on (py-spy and a trace
        of write times saw it as the worker's p99). Here a thread of the store's own does
        that work (:class:`_Checkpointer`), outside the GIL and off the loop.

        Nor does it sleep in SQLite's busy handler (``busy_timeout``): a try that finds
        the write lock taken must return at once (the group commit tries again later),
        and a waiting write polls in :func:`_begin_immediate_raw`."""
        raw = store.engine.raw_connection()
        cur = raw.cursor()
        cur.execute("PRAGMA busy_timeout=0")
        cur.close()
        path = store.engine.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            cur = raw.cursor()
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()
            self._checkpointer = _Checkpointer(store.engine, path)
        return raw

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._raw is not None:
            with contextlib.suppress(sqlite3.Error):
                self._raw.close()
            self._raw = None


class _Checkpointer:
    """A daemon thread that checkpoints the WAL of ``path`` (PASSIVE: it never waits
    for readers or writers) whenever it has grown past :data:`_WAL_CHECKPOINT_BYTES`,
    for the hot connection that does not (:meth:`SqliteDialect._hot_connection`).

    The other connections keep SQLite's automatic checkpoint, so a checkpoint is never
    missing: this one only takes the hot writes' share off their thread."""

    def __init__(self, engine: sa.Engine, path: str) -> None:
        self.engine, self.wal = engine, path + "-wal"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memberlab-wal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: Any = None
        try:
            while not self._stop.wait(_WAL_CHECK_INTERVAL):
                try:
                    if os.path.getsize(self.wal) < _WAL_CHECKPOINT_BYTES:
                        continue
                except OSError:  # no WAL yet, or the database is gone
                    continue
                try:
                    if conn is None:
                        conn = self.engine.raw_connection()
                    conn.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or gone: the next look retries
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


DIALECTS[SqliteDialect.name] = SqliteDialect
