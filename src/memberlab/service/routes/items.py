"""Callout items: ``/v1/callouts/items`` (admin scope)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from memberlab._errors import UnknownItemError
from memberlab.callouts import CalloutRecommender
from memberlab.service._checks import check_crosses
from memberlab.service._policy import KIND
from memberlab.service.deps import AdminKey, Services, Svc
from memberlab.service.routes._common import ItemPath, responses
from memberlab.service.schemas import (
    ItemIn,
    ItemOut,
    ItemsOut,
    ItemWrittenOut,
    RateOut,
    RatesIn,
    RatesOut,
    finite_or_none,
)

router = APIRouter(tags=["callouts"])
rates_router = APIRouter(tags=["callouts"])
_NOT_FOUND = responses(_404="Unknown item.")


@router.put("/{item_id}", response_model=ItemWrittenOut)
def put_item(body: ItemIn, item_id: ItemPath, svc: Svc, _: AdminKey) -> ItemWrittenOut:
    """Create or update (and reactivate) an item.

    ``warnings`` lists configured crosses that name an attribute no item has (they would
    never fire), with the attribute names the items do have.
    """
    store = svc.store

    def change(rec: CalloutRecommender) -> None:
        rec.catalog.add(item_id, body.attributes)  # validates before anything is stored
        store.upsert_item(item_id, rec.catalog.attributes(item_id), kind=KIND)

    svc.callouts.publish_change(change, reason="items")
    if svc.value is not None:  # the value policy syncs its catalog with the items table
        svc.value.publish_change(lambda rec: None, reason="items")
    problem = check_crosses(svc.settings.crosses, store.list_items(kind=KIND))
    return ItemWrittenOut(
        item_id=item_id,
        attributes=body.attributes,
        active=True,
        warnings=[problem] if problem else [],
    )


@router.delete("/{item_id}", response_model=ItemOut, responses=_NOT_FOUND)
def delete_item(item_id: ItemPath, svc: Svc, _: AdminKey) -> ItemOut:
    """Retire an item: it is no longer served; what was learned about it is kept."""
    store = svc.store
    known = {i.item_id: i for i in store.list_items(kind=KIND)}
    if item_id not in known:
        raise UnknownItemError(f"item {item_id!r} does not exist.")

    def change(rec: CalloutRecommender) -> None:
        store.retire_item(item_id, kind=KIND)
        if item_id in rec.catalog and rec.catalog.is_active(item_id):
            rec.catalog.retire(item_id)

    svc.callouts.publish_change(change, reason="items")
    if svc.value is not None:
        svc.value.publish_change(lambda rec: None, reason="items")
    return ItemOut(item_id=item_id, attributes=known[item_id].attributes, active=False)


def _rates(svc: Services) -> tuple[dict[str, tuple[Any, Any, Any]], int]:
    def rates(rec: CalloutRecommender) -> dict[str, tuple[Any, Any, Any]]:
        if not rec.catalog.active_ids():
            return {}
        df = rec.click_rates(level=0.95)
        return {str(r.item_id): (r.mean, r.lower, r.upper) for r in df.itertuples(index=False)}

    return svc.served.run_clicks(rates)


def _item_out(
    row: Any,
    table: dict[str, tuple[Any, Any, Any]],
    counts: dict[str, tuple[int, int]],
    min_obs: int,
) -> ItemOut:
    m, lo, hi = table.get(row.item_id, (None, None, None))
    n, clicks = counts.get(row.item_id, (0, 0))
    return ItemOut(
        item_id=row.item_id,
        attributes=row.attributes,
        active=row.active,
        mean=finite_or_none(m),
        lower=finite_or_none(lo),
        upper=finite_or_none(hi),
        observations=n,
        clicks=clicks,
        enough_data=n >= min_obs,
    )


@router.get("", response_model=ItemsOut)
def list_items(svc: Svc, _: AdminKey) -> ItemsOut:
    """Every item with its posterior mean click rate and 95% interval (the click model
    of the policy serving callout decisions: the value policy's under ``--objective
    value``), its closed impressions and clicks, and that policy's version."""
    rows = svc.store.list_items(kind=KIND)
    table, version = _rates(svc)
    counts = svc.store.outcome_counts(svc.served_kind)
    min_obs = svc.settings.min_observations
    return ItemsOut(
        items=[_item_out(r, table, counts, min_obs) for r in rows], policy_version=version
    )


@router.get("/{item_id}", response_model=ItemOut, responses=_NOT_FOUND)
def get_item(item_id: ItemPath, svc: Svc, _: AdminKey) -> ItemOut:
    """One item with its posterior mean click rate and 95% interval."""
    rows = [r for r in svc.store.list_items(kind=KIND) if r.item_id == item_id]
    if not rows:
        raise UnknownItemError(f"item {item_id!r} does not exist.")
    table, _version = _rates(svc)
    counts = svc.store.outcome_counts(svc.served_kind)
    return _item_out(rows[0], table, counts, svc.settings.min_observations)


@rates_router.post("/rates", response_model=RatesOut)
def click_rates(body: RatesIn, svc: Svc, _: AdminKey) -> RatesOut:
    """Posterior click rate of every active item for one shopper context, with an
    equal-tailed credible interval at ``level`` (no exploration noise), from the click
    model of the policy serving callout decisions."""

    def rates(rec: CalloutRecommender) -> list[RateOut]:
        if not rec.catalog.active_ids():
            return []
        df = rec.click_rates(body.context, level=body.level)
        return [
            RateOut(
                item_id=str(r.item_id),
                mean=finite_or_none(r.mean),
                lower=finite_or_none(r.lower),
                upper=finite_or_none(r.upper),
            )
            for r in df.itertuples(index=False)
        ]

    out, version = svc.served.run_clicks(rates)
    return RatesOut(context=body.context, level=body.level, items=out, policy_version=version)
