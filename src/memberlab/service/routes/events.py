"""Callout decisions and events: ``POST /v1/callouts/decisions``, ``POST /v1/events``."""

from __future__ import annotations

import time

from fastapi import APIRouter

from memberlab._errors import DataValidationError, NoItemsError, UnknownDecisionError
from memberlab.callouts import CalloutRecommender, Decision
from memberlab.policy import new_seed
from memberlab.service._experiment import callouts_baseline, decision_candidates
from memberlab.service._layouts import LAYOUTS
from memberlab.service._policy import KIND
from memberlab.service._value import VALUE, check_plan
from memberlab.service.deps import DecideKey, Svc
from memberlab.service.routes._common import responses
from memberlab.service.schemas import (
    DecisionIn,
    DecisionOut,
    EventsIn,
    EventsOut,
    ServedItemOut,
    epoch,
    finite_or_none,
)
from memberlab.store import DecisionRecord, EventRecord

decisions_router = APIRouter(tags=["callouts"])
events_router = APIRouter(tags=["events"])


@decisions_router.post(
    "/decisions",
    response_model=DecisionOut,
    responses=responses(_404="Unknown candidate item.", _409="No active item to choose from."),
)
async def decide(body: DecisionIn, svc: Svc, _: DecideKey) -> DecisionOut:
    """Thompson-sample the top ``k`` callouts for a shopper; the decision is logged.

    With a holdout running (``memberlab serve --holdout-fraction``) a request's
    ``unit_id`` decides its arm, and the holdout is served by the baseline."""
    # async: served on the event loop (no thread hop); the log is group-committed
    seed = new_seed()
    arm = svc.experiment.assign(body.unit_id)

    def run(rec: CalloutRecommender) -> tuple[Decision, list[str]]:
        if body.candidates is None and not rec.catalog.active_ids():
            raise NoItemsError("no active items: PUT /v1/callouts/items first.")
        cands = decision_candidates(rec, body.candidates)
        if arm.holdout:
            how = svc.experiment.policy
            return callouts_baseline(rec, body.candidates, body.k, seed, how), cands
        return rec.decide(body.context, candidates=body.candidates, k=body.k, seed=seed), cands

    # the value objective serves its own kind through the same holder machinery
    holder = svc.served
    (decision, candidates), version = holder.run(run)
    client_ts = epoch(body.timestamp)
    record = DecisionRecord(
        decision_id=decision.decision_id,  # the policy's (memberlab.policy.new_decision_id)
        kind=holder.kind.name,
        space="",
        context=body.context,
        served=decision.item_ids,
        policy_version=version,
        seed=seed,
        ts=time.time() if client_ts is None else client_ts,
        ts_client=client_ts is not None,
        unit_id=body.unit_id,
        assignment=arm.logged,
        candidates=candidates,
    )
    await svc.store.log_decision_async(
        record,
        [(s.item_id, s.propensity) for s in decision.items],
        window=svc.settings.attribution_window,
    )
    return DecisionOut(
        decision_id=record.decision_id,
        items=[
            ServedItemOut(
                item_id=s.item_id,
                score=finite_or_none(s.score),
                propensity=finite_or_none(s.propensity),
            )
            for s in decision.items
        ],
        policy_version=version,
        assignment=arm.arm,
        assignment_unit=arm.unit,
    )


@events_router.post(
    "",
    status_code=202,
    response_model=EventsOut,
    responses=responses(_404="Unknown decision."),
)
def post_events(body: EventsIn, svc: Svc, _: DecideKey) -> EventsOut:
    """Clicks and conversions; an event id counts once, forever.

    The events are committed to the database before the 202 is sent.
    """
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
    accepted, duplicates = svc.store.add_events(records)
    return EventsOut(accepted=accepted, duplicates=duplicates)
