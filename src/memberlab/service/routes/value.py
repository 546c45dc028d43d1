"""Member value at the admin endpoints: ``GET /v1/admin/value`` (per callout, expected
value next to click rate for one state) and ``POST /v1/admin/choice/compare`` (benefit
and price scenarios ranked against the baseline, :func:`memberlab.value.compare_scenarios`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from memberlab._errors import DataValidationError, NoChoiceModelError
from memberlab.service._choice import MAX_MEMBERS, MAX_MONTHS
from memberlab.service._value import VALUE, ValueHolder, load_replicates, value_prices
from memberlab.service.deps import AdminKey, Services, Svc
from memberlab.service.routes._common import responses
from memberlab.service.routes.choice import choice_model_of
from memberlab.service.schemas import NO_NUL, ChoiceOut
from memberlab.value import MemberValues, ValueRecommender, compare_scenarios

router = APIRouter(tags=["value"])
_NOT_FOUND = responses(_404="The service does not run the value objective.")
_MAX_STATES = 500
_compare_lock = threading.Lock()  # one scenario simulation at a time per process


def value_holder_of(svc: Services) -> ValueHolder:
    """The value objective's holder, or a 404 saying how to start the service with it."""
    if svc.value is None:
        raise NoChoiceModelError(
            "the service runs the click objective: start it with --choice-model DIR "
            "--objective value to rank callouts by member value."
        )
    return svc.value


def _num(v: Any) -> float | None:
    x = float(v)
    return x if math.isfinite(x) else None


def _state_of(raw: str | None, mv: MemberValues) -> dict[str, Any]:
    """The queried state (a JSON object of state columns), or the first state in which a
    plan can be taken."""
    if raw is None:
        row = int(np.flatnonzero(np.isfinite(mv.values[:, _plan_cols(mv)]).any(axis=1))[0])
        return _row(mv, row)
    try:
        state = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataValidationError(f"state: not a JSON object ({exc.msg}).") from None
    if not isinstance(state, dict):
        raise DataValidationError(
            f"state: must be a JSON object of the state columns {mv.state_cols}."
        )
    return state


def _plan_cols(mv: MemberValues) -> list[int]:
    return [mv.action_index(p) for p in mv.plans]


def _row(mv: MemberValues, code: int) -> dict[str, Any]:
    return {c: np.asarray(mv.states[c].iloc[code]).item() for c in mv.state_cols}


@router.get("/value", response_model=ChoiceOut, responses=_NOT_FOUND)
def value(
    svc: Svc,
    _: AdminKey,
    state: str | None = Query(
        None,
        description="The state, a JSON object of the choice model's state columns, e.g. "
        '{"status": "none", "delivery": 2, ...}; default: the first state in which a plan '
        "can be taken. The response lists the states to choose from.",
        max_length=10_000,
    ),
    level: float = Query(0.95, gt=0, lt=1, description="Interval level."),
) -> ChoiceOut:
    """Per callout: posterior expected member value and click rate in one state, side by
    side, with credible intervals (or ``enough_data: false`` under ``min_observations``
    closed impressions), and each plan's member value in that state."""
    holder = value_holder_of(svc)
    mv = holder.values
    ctx = _state_of(state, mv)
    code = mv.code_of(ctx)  # a missing or unknown state column: 422 naming it
    ctx = _row(mv, code)

    def table(rec: ValueRecommender) -> list[dict[str, Any]]:
        if not rec.catalog.active_ids():
            return []
        records = rec.expected_values(ctx, level).to_dict("records")
        return [{str(k): v for k, v in r.items()} for r in records]

    rows, version = holder.run(table)
    counts = svc.store.outcome_counts(VALUE)
    need = svc.settings.min_observations
    click_order = sorted(rows, key=lambda r: -r["click_rate"])
    click_rank = {r["item_id"]: i + 1 for i, r in enumerate(click_order)}
    items = []
    for rank, r in enumerate(rows, start=1):
        n, positives = counts.get(str(r["item_id"]), (0, 0))
        items.append(
            {
                "item_id": str(r["item_id"]),
                "expected_value": _num(r["expected_value"]),
                "expected_value_lower": _num(r["ev_lower"]),
                "expected_value_upper": _num(r["ev_upper"]),
                "click_rate": _num(r["click_rate"]),
                "click_rate_lower": _num(r["click_lower"]),
                "click_rate_upper": _num(r["click_upper"]),
                "conversion_rates": {p: _num(r[f"p_{p}"]) for p in holder.plans},
                "rank_value": rank,
                "rank_clicks": click_rank[r["item_id"]],
                "observations": n,
                "clicks": positives,
                "enough_data": n >= need,
            }
        )
    plans = []
    for p in mv.plans:
        a = mv.action_index(p)
        plans.append(
            {
                "plan": str(p),
                "value": _num(mv.values[code, a]),
                "lower": None if mv.lower is None else _num(mv.lower[code, a]),
                "upper": None if mv.upper is None else _num(mv.upper[code, a]),
            }
        )
    choosable = np.flatnonzero(np.isfinite(mv.values[:, _plan_cols(mv)]).any(axis=1))
    return ChoiceOut(
        {
            "state": ctx,
            "state_cols": list(mv.state_cols),
            "level": level,
            "policy_version": version,
            "horizon": mv.horizon,
            "plans": plans,
            "items": items,
            "min_observations": need,
            "disagree": bool(items) and items[0]["rank_clicks"] != 1,
            "states": [_row(mv, int(c)) for c in choosable[:_MAX_STATES]],
        }
    )


Spec = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]


class CompareIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    scenarios: dict[Name, Spec] = Field(
        min_length=1,
        max_length=20,
        examples=[{"video": "--reward-shift monthly=0.3", "dearer": "--price-change annual=1.1"}],
        description="NAME: SPEC, a SPEC the options of 'choice counterfactual'.",
    )
    price: list[Spec] = Field(
        default_factory=list,
        max_length=20,
        description="ACTION=COLUMN|AMOUNT; default: the value objective's prices, else each "
        "plan's price_<plan> state column.",
    )
    months: int = Field(12, ge=1, le=MAX_MONTHS)
    members: int = Field(2000, ge=2, le=MAX_MEMBERS)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    alpha: float = Field(0.05, gt=0, lt=1)


@router.post(
    "/choice/compare",
    response_model=ChoiceOut,
    responses=responses(_404="No choice model is configured."),
)
def choice_compare(body: CompareIn, svc: Svc, _: AdminKey) -> ChoiceOut:
    """Rank benefit and price scenarios by revenue per member and by retention against
    the baseline, with intervals (from the bootstrap replicates ``choice fit --bootstrap``
    wrote, else over members): :func:`memberlab.value.compare_scenarios`, as ``memberlab
    choice compare`` prints it."""
    holder = choice_model_of(svc)
    res = holder.results
    items = body.price or list(svc.settings.prices)
    prices = value_prices(res, items)
    t0 = time.perf_counter()
    with _compare_lock:
        cmp = compare_scenarios(
            res,
            dict(body.scenarios),
            prices=prices,
            months=body.months,
            n_members=body.members,
            replicates=load_replicates(holder.directory),
            alpha=body.alpha,
            rng=body.seed,
        )
    out = cmp.to_dict()
    out.update(
        prices=prices,
        seed=body.seed,
        ranking={"revenue": cmp.ranking("revenue"), "retention": cmp.ranking("retention")},
        seconds=round(time.perf_counter() - t0, 4),
    )
    return ChoiceOut(out)
