"""Pending-feedback ledger: windows, joins, duplicates, early events (issue 2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlab import DataValidationError, UnknownItemError
from memberlab.callouts import PendingLedger


def test_window_closes_with_zero_and_click_with_one() -> None:
    led = PendingLedger(window=10.0, early_hold=2.0)
    led.add_decision("d1", ["a", "b"], {"p": 1}, t=0.0)
    assert led.add_event("e1", "d1", "a", "click", t=3.0) == "accepted"
    assert led.close(now=9.9) == []
    out = led.close(now=10.0)
    assert [(f.decision_id, f.item_id, f.reward) for f in out] == [
        ("d1", "a", 1.0),
        ("d1", "b", 0.0),
    ]
    assert out[0].context == {"p": 1}
    assert led.add_event("e2", "d1", "b", "click", t=11.0) == "late"
    assert led.n_pending == 0


def test_duplicates_count_once_and_max_value_wins() -> None:
    led = PendingLedger(window=10.0, early_hold=0.0)
    led.add_decision("d", ["a"], {}, t=0.0)
    assert led.add_event("e", "d", "a", "click", t=1.0) == "accepted"
    assert led.add_event("e", "d", "a", "click", t=1.0) == "duplicate"
    assert led.add_event("e2", "d", "a", "conversion", t=2.0, value=3.0) == "accepted"
    (fb,) = led.close(now=100.0)
    assert fb.reward == 3.0
    assert led.stats.duplicates == 1


def test_early_event_is_held_then_joined_or_dropped() -> None:
    led = PendingLedger(window=10.0, early_hold=5.0)
    assert led.add_event("e1", "d1", "a", "click", t=0.0) == "held"
    assert led.add_event("e2", "d2", "a", "click", t=0.0) == "held"
    assert led.n_held == 2
    led.add_decision("d1", ["a"], {}, t=1.0)  # arrives in time: joined
    assert led.close(now=6.0) == []  # e2 is past its hold (6 - 0 > 5): dropped
    assert led.stats.dropped_early == 1 and led.n_held == 0
    led.add_decision("d2", ["a"], {}, t=7.0)
    out = led.close(now=20.0)
    assert {(f.decision_id, f.reward) for f in out} == {("d1", 1.0), ("d2", 0.0)}


def test_event_for_unserved_item_is_an_error() -> None:
    led = PendingLedger(window=10.0, early_hold=0.0)
    led.add_decision("d", ["a"], {}, t=0.0)
    with pytest.raises(UnknownItemError, match="'z'"):
        led.add_event("e", "d", "z", "click", t=1.0)


def test_validation() -> None:
    with pytest.raises(DataValidationError, match="window"):
        PendingLedger(window=0.0, early_hold=1.0)
    with pytest.raises(DataValidationError, match="early_hold"):
        PendingLedger(window=1.0, early_hold=-1.0)
    led = PendingLedger(window=1.0, early_hold=1.0)
    led.close(now=5.0)
    with pytest.raises(DataValidationError, match="now"):
        led.close(now=4.0)
    with pytest.raises(DataValidationError, match="item_ids"):
        led.add_decision("d", ["a", "a"], {}, t=0.0)


# ---------------------------------------------------------------- properties
events_st = st.lists(
    st.tuples(
        st.integers(0, 30),  # event id (repeats = duplicates)
        st.integers(0, 5),  # decision
        st.integers(0, 2),  # item
        st.floats(0, 40, allow_nan=False),  # event time
    ),
    max_size=60,
)


def _run(
    events: list[tuple[int, int, int, float]], order: list[int]
) -> list[tuple[str, str, float]]:
    """Decisions at t = 5 d; events fed in ``order``; closes every 5 units; returns output."""
    led = PendingLedger(window=10.0, early_hold=3.0)
    out: list[tuple[str, str, float]] = []
    schedule: list[tuple[float, int, str, int]] = [(5.0 * d, 0, "dec", d) for d in range(6)]
    schedule += [(events[i][3], 1, "evt", i) for i in order]
    schedule.sort(key=lambda s: (s[0], s[1]))
    clock = 0.0
    for t, _, kind, i in schedule:
        while clock + 5.0 <= t:
            clock += 5.0
            out += [(f.decision_id or "", f.item_id, f.reward) for f in led.close(clock)]
        if kind == "dec":
            led.add_decision(f"d{i}", ["a", "b", "c"], {"d": i}, t=t)
        else:
            eid, d, item, te = events[i]
            led.add_event(f"e{eid}", f"d{d}", "abc"[item], "click", t=te)
    out += [(f.decision_id or "", f.item_id, f.reward) for f in led.close(1000.0)]
    return out


@settings(max_examples=80, deadline=None)
@given(events=events_st, data=st.data())
def test_never_double_counts_and_is_deterministic(
    events: list[tuple[int, int, int, float]], data: st.DataObject
) -> None:
    order = list(range(len(events)))
    out = _run(events, order)
    # one record per served item of each decision, each 0 or 1
    assert len(out) == 18
    assert len({(d, i) for d, i, _ in out}) == 18
    assert all(r in (0.0, 1.0) for _, _, r in out)
    # total reward never exceeds the number of distinct event ids
    assert sum(r for _, _, r in out) <= len({e[0] for e in events})
    # deterministic given the clock
    assert _run(events, order) == out
    # events at the same time, in any arrival order, give the same result when ids are unique
    uniq = {e[0]: e for e in events}
    ev = list(uniq.values())
    perm = data.draw(st.permutations(list(range(len(ev)))))
    assert sorted(_run(ev, perm)) == sorted(_run(ev, list(range(len(ev)))))
