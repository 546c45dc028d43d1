"""Membership counterfactuals: ``/v1/choice`` (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from memberlab._errors import NoChoiceModelError
from memberlab.service._choice import DEFAULT_MEMBERS, DEFAULT_MONTHS, ChoiceHolder, parse_query
from memberlab.service.deps import AdminKey, Services, Svc
from memberlab.service.routes._common import responses
from memberlab.service.schemas import ChoiceOut

router = APIRouter(tags=["choice"])
_NOT_FOUND = responses(_404="No choice model is configured.")


def choice_model_of(svc: Services) -> ChoiceHolder:
    """The loaded choice model, or :class:`NoChoiceModelError` (404) saying how to load one."""
    if svc.choice is None:
        raise NoChoiceModelError(
            "no choice model is configured: start the service with --choice-model DIR "
            "(or MEMBERLAB_CHOICE_MODEL=DIR), DIR written by 'memberlab choice fit'."
        )
    return svc.choice


@router.get("/model", response_model=ChoiceOut, responses=_NOT_FOUND)
def choice_model(svc: Svc, _: AdminKey) -> ChoiceOut:
    """The loaded membership choice model: actions, anchor, states and query limits."""
    return ChoiceOut(choice_model_of(svc).model())


@router.get("/counterfactual", response_model=ChoiceOut, responses=_NOT_FOUND)
def choice_counterfactual(
    svc: Svc,
    _: AdminKey,
    shift: list[str] = Query(  # noqa: B008
        [],
        description="ACTION=DELTA added to the action's reward in every state "
        "(repeatable, e.g. shift=monthly=-0.3).",
    ),
    price: list[str] = Query(  # noqa: B008
        [],
        description="ACTION=STATE_COLUMN or ACTION=AMOUNT paid when choosing the action "
        "(repeatable); without it revenue is null.",
    ),
    price_change: list[str] = Query(  # noqa: B008
        [],
        description="ACTION=FACTOR: the action's price (a state column given in "
        "``price``) times FACTOR; utility through the price coefficient, revenue at the "
        "new price (repeatable, e.g. price_change=monthly=1.2).",
    ),
    months: int = Query(DEFAULT_MONTHS, description="Months to simulate (1 to 60)."),
    members: int = Query(DEFAULT_MEMBERS, description="Simulated members (1 to 20,000)."),
    seed: int = Query(0, ge=0, le=2**63 - 1, description="Random seed."),
) -> ChoiceOut:
    """Baseline against shifted rewards: plan shares per action and month with 95%
    intervals over simulated members, churn (and revenue with ``price``), from
    :func:`memberlab.choice.counterfactual`. Results are cached per query."""
    holder = choice_model_of(svc)
    q = parse_query(
        holder.results,
        shift=shift,
        price=price,
        price_change=price_change,
        months=months,
        members=members,
        seed=seed,
    )
    return ChoiceOut(holder.counterfactual(q))
