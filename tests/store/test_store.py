"""The store on SQLite and PostgreSQL: schema, keys, events, pending ledger, snapshots."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from memberlab import SchemaVersionError
from memberlab.store import (
    SCHEMA_VERSION,
    DecisionRecord,
    EventRecord,
    StaleSnapshotError,
    Store,
    normalize_url,
)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    st = Store(database_url)
    yield st
    st.close()


def _decision(did: str, ts: float, items: list[str]) -> DecisionRecord:
    return DecisionRecord(did, "callouts", "", {"member": True}, items, 1, 7, ts, True)


def _event(eid: str, did: str, item: str, ts: float) -> EventRecord:
    return EventRecord(eid, did, item, "click", None, ts, True)


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url(None).startswith("sqlite:///")
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_schema_created_once_and_versioned(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    again = Store(store.url)  # a second open (another worker) migrates nothing
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_newer_schema_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 999"))
    with pytest.raises(SchemaVersionError, match="999"):
        Store(store.url)


def test_api_keys_are_hashed_and_scoped(store: Store) -> None:
    key = store.create_api_key("decide", label="web")
    assert store.api_key_scope(key) == "decide"
    assert store.api_key_scope(key + "x") is None
    with store.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.text("SELECT key_hash FROM api_keys"))]
    assert key not in stored
    assert store.revoke_api_key(key)
    assert store.api_key_scope(key) is None
    with pytest.raises(ValueError, match="scope"):
        store.create_api_key("root")


def test_items_upsert_and_retire(store: Store) -> None:
    assert store.upsert_item("video", {"brand": "prime"})
    assert not store.upsert_item("video", {"brand": "prime", "colour": "blue"})
    assert store.retire_item("video")
    assert not store.retire_item("nope")
    (item,) = store.list_items()
    assert item.attributes == {"brand": "prime", "colour": "blue"} and not item.active
    assert store.list_items(active_only=True) == []


def test_event_ids_count_once_forever(store: Store) -> None:
    store.log_decision(_decision("d1", 100.0, ["a"]), [("a", 0.5)], window=10.0)
    e = _event("e1", "d1", "a", 101.0)
    assert store.add_events([e, e]) == (1, 1)
    assert store.add_events([e, _event("e2", "d1", "a", 102.0)]) == (1, 1)
    assert store.stats().events == 2


def test_concurrent_duplicate_events_count_once(store: Store) -> None:
    store.log_decision(_decision("d1", 100.0, ["a"]), [("a", 0.5)], window=10.0)
    events = [_event(f"e{i}", "d1", "a", 101.0) for i in range(200)]
    results: list[tuple[int, int]] = []

    def send() -> None:
        results.append(store.add_events(events))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a for a, _ in results) == 200
    assert store.stats().events == 200


def test_pending_ledger_closes_windows_with_ledger_semantics(store: Store) -> None:
    store.log_decision(_decision("d1", 100.0, ["a", "b"]), [("a", 0.5), ("b", 0.5)], window=10)
    store.log_decision(_decision("d2", 105.0, ["a"]), [("a", 0.9)], window=10)
    store.log_decision(_decision("d3", 106.0, ["a"]), [("a", 0.9)], window=10)
    store.add_events(
        [
            _event("e1", "d1", "a", 103.0),
            EventRecord("e2", "d1", "a", "conversion", 4.5, 104.0, True),
            _event("late", "d2", "a", 130.0),
            _event("early", "d3", "a", 105.5),  # before its decision: within early_hold
        ]
    )
    assert store.data_clock() == 130.0
    assert store.due_impressions("callouts", now=109.0, early_hold=1.0) == []
    due = store.due_impressions("callouts", now=110.0, early_hold=1.0)
    assert {(d.decision_id, d.item_id, d.reward) for d in due} == {("d1", "a", 4.5), ("d1", "b", 0)}
    store.publish(
        "callouts",
        b"v1",
        base_version=0,
        closed=[(d.decision_id, d.item_id, d.reward) for d in due],
    )
    due = store.due_impressions("callouts", now=120.0, early_hold=1.0)
    # d2's click came after its window: a zero; d3's came 0.5 s early: it counts.
    assert {(d.decision_id, d.item_id, d.reward) for d in due} == {("d2", "a", 0), ("d3", "a", 1)}
    stats = store.stats(now=120.0)
    assert (stats.decisions, stats.pending, stats.closed, stats.policy_version) == (3, 2, 2, 1)
    assert stats.extra["trainer_lag_seconds"] == pytest.approx(5.0)
    assert sorted(c.reward for c in store.closed_impressions("callouts")) == [0.0, 4.5]


def test_publish_is_versioned_and_refuses_stale_writers(store: Store) -> None:
    assert store.latest_version("callouts") == 0
    assert store.publish("callouts", b"one", base_version=0) == 1
    with pytest.raises(StaleSnapshotError):
        store.publish("callouts", b"other", base_version=0)
    assert store.publish("callouts", b"two", base_version=1, keep=1) == 2
    snap = store.load_snapshot("callouts")
    assert snap is not None and (snap.version, snap.data) == (2, b"two")


def test_one_lease_holder_at_a_time(store: Store) -> None:
    assert store.try_lease("a", ttl=60)
    assert not store.try_lease("b", ttl=60)
    assert store.try_lease("a", ttl=60)  # renewal
    store.release_lease("a")
    assert store.try_lease("b", ttl=0.0)
    assert store.try_lease("a", ttl=60)  # b's lease expired


def test_migrations_upgrade_in_place(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database at version 1 is upgraded by a later migration, data kept."""
    from memberlab.store import _schema

    st = Store(sqlite_url)
    st.upsert_item("a", {"x": "1"})
    st.close()

    def later(conn: sa.Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE items ADD COLUMN note VARCHAR(20) DEFAULT ''")

    n = len(_schema.MIGRATIONS)
    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, later])
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", n + 1)
    st = Store(sqlite_url)
    assert st.schema_version() == n + 1
    with st.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT item_id, note FROM items")).all() == [("a", "")]
    st.close()


def test_schema_1_database_gains_experiment_and_plan_columns(database_url: str) -> None:
    """A database written by schema 1 (before unit ids, arms, candidates and plans) is
    upgraded in place: its rows are kept and the new columns read as NULL."""
    st = Store(database_url)
    st.upsert_item("a", {"x": "1"})
    with st.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_decisions_unit")
        conn.exec_driver_sql("DROP TABLE evaluations")
        for table, column in [
            ("decisions", "unit_id"),
            ("decisions", "assignment"),
            ("decisions", "candidates"),
            ("events", "plan"),
        ]:
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.exec_driver_sql("UPDATE schema_version SET version = 1")
        conn.exec_driver_sql(
            "INSERT INTO decisions (decision_id, kind, space, context, served, policy_version,"
            " seed, ts, ts_client, created_at) VALUES"
            " ('d1', 'callouts', '', '{}', '[]', 1, 7, 0.0, false, 0.0)"
        )
    st.close()
    st = Store(database_url)
    assert st.schema_version() == SCHEMA_VERSION
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT decision_id, unit_id, assignment, candidates FROM decisions")
        ).all()
        assert [tuple(r) for r in rows] == [("d1", None, None, None)]
        assert conn.execute(sa.text("SELECT count(plan) FROM events")).scalar() == 0
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("decisions")}
        assert sa.inspect(conn).has_table("evaluations")
    assert "ix_decisions_unit" in names
    st.close()


def test_due_impressions_with_conversions_keep_clicks_and_plans_apart(store: Store) -> None:
    """The value objective's reading of the ledger: clicks alone make the reward, and the
    earliest conversion in the window that names a plan gives the plan (later ones, and
    conversions outside the window, do not)."""

    def dec(did: str) -> DecisionRecord:
        return DecisionRecord(did, "value", "", {"tier": 1}, ["a"], 1, 7, 100.0, True)

    for did in ("c1", "c2", "c3", "c4"):
        store.log_decision(dec(did), [("a", 0.5)], window=10)
    conv = "conversion"
    store.add_events(
        [
            _event("k1", "c1", "a", 101.0),
            EventRecord("p1", "c1", "a", conv, None, 102.0, True, plan="annual"),
            EventRecord("p1b", "c1", "a", conv, None, 103.0, True, plan="monthly"),
            EventRecord("p2", "c2", "a", conv, None, 102.0, True, plan="monthly"),  # no click
            _event("k3", "c3", "a", 101.0),
            EventRecord("p3", "c3", "a", conv, None, 130.0, True, plan="annual"),  # too late
        ]
    )
    due = store.due_impressions("value", now=110.0, conversions=True)
    got = {d.decision_id: (d.reward, d.plan) for d in due}
    assert got == {
        "c1": (1.0, "annual"),
        "c2": (0.0, "monthly"),
        "c3": (1.0, None),
        "c4": (0.0, None),
    }
    # read without conversions, a conversion is a reward and no plan is read
    plain = {d.decision_id: (d.reward, d.plan) for d in store.due_impressions("value", 110.0)}
    assert plain["c2"] == (1.0, None)
