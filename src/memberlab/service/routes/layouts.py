"""Layout spaces and decisions: ``/v1/layouts`` (define and inspect: admin; decide: decide)."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from memberlab._errors import SpaceConflictError, UnknownItemError
from memberlab.layouts import LayoutDecision, LayoutPolicy, LayoutSpace
from memberlab.policy import new_seed
from memberlab.service._experiment import layouts_baseline
from memberlab.service._layouts import LAYOUTS, LayoutsHolder
from memberlab.service._policy import lease
from memberlab.service.deps import AdminKey, Services, Svc
from memberlab.service.routes._common import (
    SpacePath,
    hot_route,
    json_response,
    read_body,
    responses,
    services_for,
)
from memberlab.service.schemas import (
    LayoutDecisionIn,
    LayoutDecisionOut,
    LayoutSpaceIn,
    LayoutSpaceOut,
    SpaceRetiredOut,
    SpacesOut,
    epoch,
    finite_or_none,
)
from memberlab.store import DecisionRecord

router = APIRouter(tags=["layouts"])
_NOT_FOUND = responses(_404="Unknown layout space.")


def _grows(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why ``new`` is not ``old`` plus slots or variants (``None``: it is)."""
    for slot, variants in old["slots"].items():
        if slot not in new["slots"]:
            return f"slot {slot!r} is removed"
        gone = [v for v in variants if v not in new["slots"][slot]]
        if gone:
            return f"variants {gone} of slot {slot!r} are removed"
    return None


def grow_space(holder: LayoutsHolder, space: str, spec: dict[str, Any]) -> int:
    """Publish ``space`` with definition ``spec``, keeping learned weights that still fit.

    Slots and variants may be added (and interactions, constraints and context fields
    changed); removing a slot or variant is refused with :class:`SpaceConflictError`,
    since logged decisions served it (retire the space with DELETE and define a new one).
    """
    normal = LayoutSpace.from_dict(spec).to_dict()
    with lease(holder.store, holder.settings, wait=10.0):
        policy, base, old = holder.load_latest(space)
        why = _grows(old, normal)
        if why is not None:
            raise SpaceConflictError(
                f"layout space {space!r} exists with a different definition and {why}: "
                f"{old}. A space can gain slots and variants; to start over, DELETE it first."
            )
        grown = policy.with_space(normal)
        version = holder.store.publish(
            LAYOUTS, grown.to_bytes(), base_version=base, space=space, spec=normal, reason="grow"
        )
    holder.current(space, force=True)
    return version


@router.put(
    "/{space}",
    response_model=LayoutSpaceOut,
    responses=responses(_409="Defined differently before, with slots or variants removed."),
)
def put_layout_space(
    body: LayoutSpaceIn, space: SpacePath, svc: Svc, _: AdminKey
) -> LayoutSpaceOut:
    """Define a layout space (idempotent). An existing space may gain slots and variants:
    the learned weights of unchanged features are kept, new ones start at their group
    prior. Removing a slot or variant is refused with 409."""
    spec = body.model_dump()
    changed = False
    try:
        version, created = svc.layouts.define(space, spec)
    except SpaceConflictError:
        version, created, changed = grow_space(svc.layouts, space, spec), False, True
    return LayoutSpaceOut(
        space=space,
        definition=svc.layouts.spec(space),
        policy_version=version,
        created=created,
        changed=changed,
    )


@router.get("/{space}", response_model=LayoutSpaceOut, responses=_NOT_FOUND)
def get_layout_space(space: SpacePath, svc: Svc, _: AdminKey) -> LayoutSpaceOut:
    """The space's definition and its leaderboard (layouts by posterior mean)."""

    def board(policy: LayoutPolicy) -> list[dict[str, Any]]:
        return [e.to_dict() for e in policy.leaderboard(top=10)]

    entries, version = svc.layouts.call(space, board)
    seen: dict[str, int] = {}
    for d in svc.store.closed_impressions(LAYOUTS, space):
        key = json.dumps(d.served, sort_keys=True)
        seen[key] = seen.get(key, 0) + 1
    min_obs = svc.settings.min_observations
    clean = []
    for e in entries:
        row = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in e.items()}
        n = seen.get(json.dumps(e.get("layout"), sort_keys=True), 0)
        clean.append({**row, "observations": n, "enough_data": n >= min_obs})
    return LayoutSpaceOut(
        space=space,
        definition=svc.layouts.spec(space),
        policy_version=version,
        leaderboard=clean,
        min_observations=min_obs,
    )


@router.delete("/{space}", response_model=SpaceRetiredOut, responses=_NOT_FOUND)
def retire_layout_space(space: SpacePath, svc: Svc, _: AdminKey) -> SpaceRetiredOut:
    """Retire a space: it is no longer served and its open impressions are dropped; its
    logged decisions and events stay. PUT it again to start afresh."""
    store = svc.store
    with lease(store, svc.settings, wait=10.0):
        if store.latest_version(LAYOUTS, space) == 0:
            raise UnknownItemError(f"layout space {space!r} does not exist.")
        dropped = store.retire_space(LAYOUTS, space)
    return SpaceRetiredOut(space=space, retired=True, dropped_pending=dropped)


@router.post(
    "/{space}/decisions",
    response_model=LayoutDecisionOut,
    responses=_NOT_FOUND,
    openapi_extra=hot_route(LayoutDecisionIn),
)
async def post_layout_decision(request: Request, space: SpacePath) -> Response:
    """Thompson-sample a layout for a request; rewards come through POST /v1/events
    with the decision id and no item id. With a holdout running, ``unit_id`` decides the
    arm (the same arm as the unit's callouts) and the holdout gets the baseline."""
    svc = services_for(request, "decide")
    body = await read_body(request, LayoutDecisionIn)
    return json_response(await decide_layout(body, space, svc))


async def decide_layout(
    body: LayoutDecisionIn, space: str, svc: Services, _key: str = ""
) -> LayoutDecisionOut:
    """The logic of :func:`post_layout_decision`, callable without HTTP."""
    seed = new_seed()
    arm = svc.experiment.assign(body.unit_id)

    def run(p: LayoutPolicy) -> LayoutDecision:
        if arm.holdout:
            return layouts_baseline(p, seed, svc.experiment.policy)
        return p.decide(body.context, seed=seed)

    decision, version = svc.layouts.call(space, run)
    client_ts = epoch_or_now(body.timestamp)
    record = DecisionRecord(
        decision_id=decision.decision_id,
        kind=LAYOUTS,
        space=space,
        context=body.context,
        served=decision.layout,
        policy_version=version,
        seed=seed,
        ts=client_ts[0],
        ts_client=client_ts[1],
        unit_id=body.unit_id,
        assignment=arm.logged,
    )
    await svc.store.log_decision_async(
        record, [("", decision.propensity)], window=svc.settings.attribution_window
    )
    return LayoutDecisionOut(
        decision_id=decision.decision_id,
        layout=decision.layout,
        propensity=finite_or_none(decision.propensity),
        policy_version=version,
        assignment=arm.arm,
        assignment_unit=arm.unit,
    )


def epoch_or_now(ts: Any) -> tuple[float, bool]:
    """``(seconds since the epoch, whether the client gave it)``."""
    client = epoch(ts)
    return (time.time(), False) if client is None else (client, True)


spaces_router = APIRouter(tags=["layouts"])


@spaces_router.get("", response_model=SpacesOut)
def list_layout_spaces(svc: Svc, _: AdminKey) -> SpacesOut:
    """Names of the defined layout spaces."""
    return SpacesOut(spaces=svc.store.spaces(LAYOUTS))
