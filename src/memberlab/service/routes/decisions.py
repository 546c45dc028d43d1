"""Callout decisions: ``POST /v1/callouts/decisions``, the service's hottest route."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from memberlab._errors import NoItemsError
from memberlab.callouts import CalloutRecommender, Decision
from memberlab.policy import new_seed
from memberlab.service._experiment import (
    LoggedCandidates,
    callouts_baseline,
    candidates_committed,
    decision_candidates,
)
from memberlab.service.deps import Services
from memberlab.service.routes._common import (
    hot_route,
    json_response,
    read_body,
    responses,
    services_for,
)
from memberlab.service.schemas import DecisionIn, DecisionOut, ServedItemOut, epoch, finite_or_none
from memberlab.store import DecisionRecord

router = APIRouter(tags=["callouts"])


@router.post(
    "/decisions",
    response_model=DecisionOut,
    responses=responses(_404="Unknown candidate item.", _409="No active item to choose from."),
    openapi_extra=hot_route(DecisionIn),
)
async def post_decision(request: Request) -> Response:
    """Thompson-sample the top ``k`` callouts for a shopper; the decision is logged.

    With a holdout running (``memberlab serve --holdout-fraction``) a request's
    ``unit_id`` decides its arm, and the holdout is served by the baseline."""
    svc = services_for(request, "decide")
    return json_response(await decide(await read_body(request, DecisionIn), svc))


async def decide(body: DecisionIn, svc: Services, _key: str = "") -> DecisionOut:
    """The logic of :func:`post_decision`, callable without HTTP."""
    # async: served on the event loop (no thread hop); the log is group-committed
    seed = new_seed()
    arm = svc.experiment.assign(body.unit_id)

    def run(rec: CalloutRecommender) -> tuple[Decision, LoggedCandidates]:
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
    candidates_committed(candidates)  # later decisions may now refer to a full list
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
