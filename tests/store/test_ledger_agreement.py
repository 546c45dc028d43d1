"""The library ledger (memberlab.callouts.PendingLedger) and the SQL ledger (the store's
impressions joined with events) give the same feedback for the same event stream.

The stream (seed 20260101, 120 decisions of 1 or 2 items, 5 closes) has clicks inside and
outside the window, events stamped before their decision within and beyond
``early_hold``, events that arrive before their decision is known, duplicate event ids
with other values, conversions with values (the largest counts), and events that arrive
after their decision was closed. Events the SQL side cannot take yet (their decision is
not logged: the service answers 404) are the library's held events; they are sent to the
store once their decision is logged, as a retrying client does.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from memberlab.callouts import PendingLedger
from memberlab.store import DecisionRecord, EventRecord, Store

WINDOW, EARLY = 30.0, 3.0
SEED = 20260101


def _stream(rng: np.random.Generator) -> list[tuple[float, str, tuple]]:
    """Arrival-ordered actions: ("decision", (did, items, t)) and ("event", (...)) and
    ("close", now), each with the time it is processed."""
    out: list[tuple[float, int, str, tuple]] = []
    seq = 0
    n_event = 0
    for n in range(120):
        t = 2.0 * n + float(rng.uniform(0, 1))
        did = f"d{n:03d}"
        items = ["a", "b"] if rng.random() < 0.4 else [str(rng.choice(["a", "b", "c"]))]
        out.append((t, seq := seq + 1, "decision", (did, items, t)))
        for _ in range(int(rng.integers(0, 4))):
            n_event += 1
            item = str(rng.choice(items))
            kind = "conversion" if rng.random() < 0.3 else "click"
            value = round(float(rng.uniform(0.5, 5.0)), 3) if kind == "conversion" else None
            stamp = t + float(rng.uniform(-2 * EARLY, 1.3 * WINDOW))  # early, inside, late
            arrive = stamp + float(rng.uniform(0, 20))
            if rng.random() < 0.15:  # arrives before the decision is known: held
                arrive = t - float(rng.uniform(0.01, 0.5))
                stamp = t - float(rng.uniform(0, EARLY * 0.9))
            eid = f"e{n_event}"
            ev = (eid, did, item, kind, stamp, value)
            out.append((arrive, seq := seq + 1, "event", ev))
            if rng.random() < 0.2:  # a retry of the same event id, maybe another value
                again = (eid, did, item, kind, stamp, None if value is None else value * 2)
                out.append((arrive + float(rng.uniform(0, 40)), seq := seq + 1, "event", again))
    for now in (60.0, 61.0, 130.0, 200.0, 400.0):
        out.append((now, seq := seq + 1, "close", (now,)))
    out.sort(key=lambda x: (x[0], x[1]))
    return [(a, kind, payload) for a, _, kind, payload in out]


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    st = Store(database_url)
    yield st
    st.close()


def test_library_and_sql_ledgers_agree_on_one_event_stream(store: Store) -> None:
    rng = np.random.default_rng(SEED)
    stream = _stream(rng)
    led = PendingLedger(window=WINDOW, early_hold=EARLY)
    logged: set[str] = set()
    waiting: dict[str, list[EventRecord]] = {}  # refused by the service until logged
    version = 0
    statuses: dict[str, int] = {}
    closes = 0
    for _arrive, kind, payload in stream:
        if kind == "decision":
            did, items, t = payload
            led.add_decision(did, items, {"page": "home"}, t=t)
            rec = DecisionRecord(did, "callouts", "", {"page": "home"}, items, 1, 0, t, True)
            store.log_decision(rec, [(i, 0.5) for i in items], window=WINDOW)
            logged.add(did)
            if did in waiting:
                store.add_events(waiting.pop(did))
        elif kind == "event":
            eid, did, item, ev_kind, stamp, value = payload
            status = led.add_event(eid, did, item, ev_kind, t=stamp, value=value)
            statuses[status] = statuses.get(status, 0) + 1
            rec = EventRecord(eid, did, item, ev_kind, value, stamp, True)
            if did in logged:
                store.add_events([rec])
            else:
                waiting.setdefault(did, []).append(rec)
        else:
            (now,) = payload
            lib = sorted((f.decision_id, f.item_id, float(f.reward)) for f in led.close(now))
            due = store.due_impressions("callouts", now, early_hold=EARLY)
            sql = sorted((d.decision_id, d.item_id, d.reward) for d in due)
            assert sql == lib, f"close at {now}: first difference " + str(
                next(((a, b) for a, b in zip(sql, lib, strict=False) if a != b), None)
            )
            version = store.publish(
                "callouts",
                b"x",
                base_version=version,
                closed=[(d.decision_id, d.item_id, d.reward) for d in due],
            )
            closes += 1
    # the stream exercised every case it claims to
    assert closes == 5 and not waiting
    assert {"accepted", "duplicate", "held", "late"} <= set(statuses), statuses
    assert led.stats.joined_from_hold > 0 and led.stats.duplicates > 0
    rewards = [c.reward for c in store.closed_impressions("callouts")]
    assert len(rewards) == sum(len(p[1]) for _, k, p in stream if k == "decision")
    assert 0 < sum(r > 0 for r in rewards) < len(rewards)
    assert any(r not in (0.0, 1.0) for r in rewards)  # conversion values came through
