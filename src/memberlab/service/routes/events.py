"""Clicks and conversions: ``POST /v1/events``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from memberlab._errors import DataValidationError, UnknownDecisionError
from memberlab.service._layouts import LAYOUTS
from memberlab.service._policy import KIND
from memberlab.service._value import VALUE, check_plan
from memberlab.service.deps import Services
from memberlab.service.routes._common import (
    hot_route,
    json_response,
    read_body,
    responses,
    services_for,
)
from memberlab.service.schemas import (
    EventsIn,
    EventsOut,
    epoch,
)
from memberlab.store import EventRecord

events_router = APIRouter(tags=["events"])


@events_router.post(
    "",
    status_code=202,
    response_model=EventsOut,
    responses=responses(_404="Unknown decision."),
    openapi_extra=hot_route(EventsIn),
)
async def post_events(request: Request) -> Response:
    """Clicks and conversions; an event id counts once, forever.

    The events are committed to the database before the 202 is sent.
    """
    svc = services_for(request, "decide")
    out = await record_events(await read_body(request, EventsIn), svc)
    return json_response(out, status_code=202)


async def record_events(body: EventsIn, svc: Services, _key: str = "") -> EventsOut:
    """The logic of :func:`post_events`, callable without HTTP."""
    # async, on the event loop like decisions: a thread-pool write held SQLite's lock
    # while it waited for the GIL, and decisions queued behind it
    limit = svc.settings.max_events_per_request
    if len(body.events) > limit:
        raise DataValidationError(f"{len(body.events)} events in one request, at most {limit}.")
    known = svc.store.get_decisions([e.decision_id for e in body.events])
    missing = sorted({e.decision_id for e in body.events} - set(known))
    if missing:
        raise UnknownDecisionError(f"unknown decision id(s): {missing[:10]}", missing)
    records = []
    now = time.time()
    for n, e in enumerate(body.events):
        d = known[e.decision_id]
        item = e.item_id or ""
        if d.kind == LAYOUTS and item:
            raise DataValidationError(
                f"events.{n}: decision {e.decision_id!r} is a layout decision; "
                "send its events without an item_id."
            )
        if d.kind in (KIND, VALUE) and item not in d.served:
            raise DataValidationError(
                f"events.{n}: item {e.item_id!r} was not served by decision "
                f"{e.decision_id!r} (served: {d.served})."
            )
        check_plan(svc.value, d.kind, e.type, e.plan, f"events.{n}")
        ts = epoch(e.timestamp)
        records.append(
            EventRecord(
                event_id=e.event_id,
                decision_id=e.decision_id,
                item_id=item,
                type=e.type,
                value=e.value,
                ts=now if ts is None else ts,
                ts_client=ts is not None,
                plan=e.plan,
            )
        )
    accepted, duplicates = await svc.store.add_events_async(records)
    return EventsOut(accepted=accepted, duplicates=duplicates)
