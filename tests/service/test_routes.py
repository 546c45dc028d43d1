"""Endpoint logic without HTTP: route functions called with an injected ``Services``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from memberlab._errors import (
    AuthError,
    DataValidationError,
    ForbiddenError,
    MemberlabError,
    NoItemsError,
    UnknownDecisionError,
    UnknownItemError,
)
from memberlab.service.deps import Services, build_services
from memberlab.service.errors import STATUS, status_of
from memberlab.service.routes import admin, decisions, events, items, layouts
from memberlab.service.schemas import (
    DecisionIn,
    EventIn,
    EventsIn,
    ItemIn,
    LayoutDecisionIn,
    LayoutSpaceIn,
)
from memberlab.service.settings import Settings
from memberlab.store import Store


@pytest.fixture
def svc(tmp_path: Path) -> Services:
    store = Store(str(tmp_path / "m.db"))
    s = build_services(Settings(train_interval=0, attribution_window=10), store)
    s.callouts.ensure_initial()
    return s


def test_routes_run_as_plain_functions(svc: Services) -> None:
    with pytest.raises(NoItemsError):
        asyncio.run(decisions.decide(DecisionIn(), svc, "decide"))
    out = items.put_item(ItemIn(attributes={"benefit": "video"}), "v", svc, "admin")
    assert out.active and out.warnings == []
    d = asyncio.run(decisions.decide(DecisionIn(context={"page": "films"}), svc, "decide"))
    assert d.items[0].item_id == "v" and 0 < (d.items[0].propensity or 0) <= 1
    ev = EventIn(event_id="e1", decision_id=d.decision_id, item_id="v", type="click")
    assert asyncio.run(events.record_events(EventsIn(events=[ev]), svc, "decide")).accepted == 1
    with pytest.raises(UnknownDecisionError) as bad:
        bad_id = EventIn(event_id="e2", decision_id="nope", type="click")
        asyncio.run(events.record_events(EventsIn(events=[bad_id]), svc, "decide"))
    assert bad.value.detail == ["nope"]
    step = admin.train(svc, "admin")
    assert step.closed == 0 and step.pending == 1 and step.next_window_closes_in is not None
    assert items.get_item("v", svc, "admin").observations == 0
    with pytest.raises(UnknownItemError):
        items.get_item("w", svc, "admin")
    space = LayoutSpaceIn(slots={"a": ["x", "y"]}, interactions=[["a", "a"]])
    with pytest.raises(DataValidationError):  # a slot cannot interact with itself
        layouts.put_layout_space(space, "s", svc, "admin")
    layouts.put_layout_space(LayoutSpaceIn(slots={"a": ["x", "y"]}), "s", svc, "admin")
    lay = asyncio.run(layouts.decide_layout(LayoutDecisionIn(), "s", svc, "decide"))
    assert lay.layout["a"] in "xy"


def test_one_table_from_exception_to_status() -> None:
    assert status_of(ForbiddenError("x")) == (403, "forbidden")
    assert status_of(AuthError("x")) == (401, "unauthorized")
    assert status_of(UnknownDecisionError("x")) == (404, "unknown_decision")
    assert status_of(DataValidationError("x")) == (422, "invalid_request")
    assert status_of(RuntimeError("x")) == (500, "internal_error")
    # most specific first: no row is shadowed by an earlier, more general one
    for k, (cls, _, _) in enumerate(STATUS):
        assert not any(issubclass(cls, earlier) for earlier, _, _ in STATUS[:k]), cls
    assert all(issubclass(cls, MemberlabError) for cls, _, _ in STATUS)


def test_every_service_and_store_error_is_in_the_tree() -> None:
    from memberlab import _errors
    from memberlab.service import _layouts, _policy
    from memberlab.store import StaleSnapshotError

    for cls in (_policy.LeaseBusyError, _layouts.SpaceConflictError, StaleSnapshotError):
        assert issubclass(cls, MemberlabError) and cls.__module__ == "memberlab._errors"
    from memberlab.service import _choice

    assert issubclass(_choice.ChoiceQueryError, _errors.DataValidationError)
