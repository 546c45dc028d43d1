"""Group commit of decision logs (``Store.log_decision_async``) on SQLite and PostgreSQL:
every awaited decision is committed when the await returns, decisions queued in one loop
iteration share a transaction, a held SQLite write lock never blocks the event loop, and
one bad row fails only its own request."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from memberlab.store import DecisionRecord, EventRecord, Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    st = Store(database_url)
    yield st
    st.close()


def _decision(did: str | None = None) -> DecisionRecord:
    return DecisionRecord(
        did or uuid.uuid4().hex, "callouts", "", {"page": "films"}, ["a", "b"], 1, 7, 100.0
    )


def _count(url: str, table: str) -> int:
    other = Store(url, migrate=False)  # a separate connection pool: sees only commits
    try:
        with other.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    finally:
        other.close()


def test_awaited_decisions_are_committed_and_share_transactions(
    store: Store, database_url: str
) -> None:
    commits: list[int] = []
    write = store._write_decisions
    try_write = store._try_write_decisions

    def counting_try(rows: list) -> bool:  # type: ignore[type-arg]
        done = try_write(rows)
        if done:
            commits.append(len(rows))
        return done

    store._try_write_decisions = counting_try  # type: ignore[method-assign]
    store._write_decisions = write  # type: ignore[method-assign]

    async def main() -> None:
        await asyncio.gather(
            *(
                store.log_decision_async(_decision(), [("a", 0.5), ("b", 0.25)], window=10.0)
                for _ in range(200)
            )
        )

    asyncio.run(main())
    assert _count(database_url, "decisions") == 200
    assert _count(database_url, "impressions") == 400
    assert sum(commits) == 200
    assert len(commits) < 20, commits  # batched: queued in one iteration, one commit


def test_a_held_sqlite_write_lock_does_not_block_the_loop(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    other = Store(sqlite_url, migrate=False)
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    async def main() -> float:
        raw = other.engine.raw_connection()
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")  # another process's writer, in effect
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        log = asyncio.create_task(
            store.log_decision_async(_decision("held"), [("a", 0.5)], window=1.0)
        )
        await asyncio.sleep(0.3)
        assert not log.done()  # waiting for the lock ...
        n_during = len(ticks)
        cur.execute("COMMIT")
        raw.close()
        await asyncio.wait_for(log, 5)
        stop.set()
        await tick
        return n_during

    try:
        n_during = asyncio.run(main())
        assert n_during >= 20, n_during  # ... while the loop kept running (~60 ticks)
        assert _count(sqlite_url, "decisions") == 1
    finally:
        other.close()
        store.close()


def test_one_bad_row_fails_only_its_own_request(store: Store, database_url: str) -> None:
    store.log_decision(_decision("taken"), [("a", 0.5)], window=1.0)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(
            store.log_decision_async(_decision("ok-1"), [("a", 0.5)], window=1.0),
            store.log_decision_async(_decision("taken"), [("a", 0.5)], window=1.0),
            store.log_decision_async(_decision("ok-2"), [("a", 0.5)], window=1.0),
            return_exceptions=True,
        )

    out = asyncio.run(main())
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], Exception)
    assert _count(database_url, "decisions") == 3


def _event(eid: str, did: str) -> EventRecord:
    return EventRecord(eid, did, "a", "click", None, 101.0, True)


def test_events_of_concurrent_requests_share_a_commit_and_count_per_request(
    store: Store, database_url: str
) -> None:
    store.log_decision(_decision("d"), [("a", 0.5)], window=10.0)
    store.add_events([_event("e0", "d")])
    commits: list[int] = []
    try_write = store._try_write_events

    def counting_try(batches: list) -> list | None:  # type: ignore[type-arg]
        out = try_write(batches)
        if out is not None:
            commits.append(len(batches))
        return out

    store._try_write_events = counting_try  # type: ignore[method-assign]

    async def main() -> list[tuple[int, int]]:
        return await asyncio.gather(
            store.add_events_async([_event("e1", "d"), _event("e2", "d"), _event("e1", "d")]),
            store.add_events_async([_event("e2", "d"), _event("e3", "d")]),  # e2: the first's
            store.add_events_async([_event("e0", "d")]),  # stored before
        )

    assert asyncio.run(main()) == [(2, 1), (1, 1), (0, 1)]
    assert commits == [3]  # one transaction for the three requests
    assert _count(database_url, "events") == 4
    got = store.get_decisions(["d"])["d"]
    assert got.decision_id == "d"


def test_a_held_sqlite_write_lock_does_not_block_the_loop_on_events(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    other = Store(sqlite_url, migrate=False)
    store.log_decision(_decision("d"), [("a", 0.5)], window=1.0)
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    async def main() -> tuple[int, tuple[int, int]]:
        raw = other.engine.raw_connection()
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")  # another process's writer (the trainer), in effect
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        add = asyncio.create_task(store.add_events_async([_event("e", "d")]))
        await asyncio.sleep(0.3)
        assert not add.done()  # waiting for the lock ...
        n_during = len(ticks)
        cur.execute("COMMIT")
        raw.close()
        out = await asyncio.wait_for(add, 5)
        stop.set()
        await tick
        return n_during, out

    try:
        n_during, out = asyncio.run(main())
        assert n_during >= 20, n_during  # ... while the loop kept running (~60 ticks)
        assert out == (1, 0) and _count(sqlite_url, "events") == 1
    finally:
        other.close()
        store.close()


def test_a_busy_loop_spaces_its_commits_and_an_idle_one_commits_at_once(sqlite_url: str) -> None:
    from memberlab.store import _group

    store = Store(sqlite_url)
    flushes: list[float] = []
    try_write = store._try_write_decisions

    def timed_try(rows: list) -> list | None:  # type: ignore[type-arg]
        flushes.append(asyncio.get_running_loop().time())
        return try_write(rows)

    store._try_write_decisions = timed_try  # type: ignore[method-assign]

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        await store.log_decision_async(_decision(), [("a", 0.5)], window=1.0)
        # the next write right after a commit waits out the gather time ...
        await store.log_decision_async(_decision(), [("a", 0.5)], window=1.0)
        await asyncio.sleep(0.05)
        # ... a write after an idle spell is committed in the iteration it came in
        submitted = loop.time()
        await store.log_decision_async(_decision(), [("a", 0.5)], window=1.0)
        return flushes[1] - flushes[0], flushes[2] - submitted

    try:
        spaced, idle = asyncio.run(main())
    finally:
        store.close()
    assert spaced >= 0.9 * _group._GATHER, spaced
    assert idle < 0.5 * _group._GATHER, idle
