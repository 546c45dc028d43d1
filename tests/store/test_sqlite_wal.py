"""SQLite's WAL checkpoints stay off the hot write path.

The decision log and events are written on the service's event loop through one driver
connection. SQLite checkpoints the WAL inside the COMMIT that takes it past 1,000 pages,
about 16 ms of waiting for the disk on a small machine; at 1,000 decisions/s that stalled
the loop every ~150 ms and set the worker's p99 (benchmarks/service_load.py). The hot
connection neither checkpoints nor sleeps in SQLite's busy handler; a thread of the
store does the checkpoints.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from memberlab.store import DecisionRecord, Store


def _log(store: Store, n: int) -> None:
    for _ in range(n):  # one transaction each, as a lone decision on an idle service
        record = DecisionRecord(
            uuid.uuid4().hex, "callouts", "", {"page": "films"}, ["a"], 1, 7, 100.0
        )
        store.log_decision(record, [("a", 0.5)], window=10.0)


def test_the_hot_connection_never_checkpoints_nor_sleeps_on_a_busy_lock(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/m.db")
    try:
        _log(store, 1)
        cur = store.sql._raw.cursor()  # type: ignore[attr-defined]
        assert cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert cur.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        # the store's other connections keep SQLite's own checkpoints
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        store.close()


def test_the_store_checkpoints_the_wal_of_its_hot_writes(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = Store(f"sqlite:///{db}")
    try:
        _log(store, 1)
        before = os.path.getsize(db)
        _log(store, 400)  # about 10 MB of WAL: 25 KB of pages per lone commit
        # only a checkpoint copies pages into the database file, and only the hot
        # connection writes here: the file grows once the store's checkpointer has run
        deadline = time.monotonic() + 10
        while os.path.getsize(db) < before + (64 << 10):
            assert time.monotonic() < deadline, "no checkpoint in 10 s"
            time.sleep(0.1)
    finally:
        store.close()
    # closing stops the checkpointer thread
    assert store.sql._checkpointer is None  # type: ignore[attr-defined]
