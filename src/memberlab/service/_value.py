"""The value objective in the service: callouts ranked by expected member value.

``memberlab serve --choice-model DIR --objective value`` computes the member value of
each plan per state once at start-up (:func:`memberlab.value.member_values` on the
fitted choice results in DIR, with its bootstrap replicates when ``choice fit
--bootstrap`` wrote them; prices parsed as ``choice counterfactual`` parses them) and
serves a :class:`~memberlab.value.ValueRecommender` as one more policy kind
(:data:`VALUE_KIND`, name ``"value"``) through the one holder and trainer: decisions,
snapshots, delayed feedback and attribution windows work as for clicks; the trainer reads
each closed impression's click and the plan of its first conversion
(``Store.due_impressions(conversions=True)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from memberlab._errors import DataValidationError, LeaseBusyError, StaleSnapshotError
from memberlab.callouts import CalloutRecommender, Catalog
from memberlab.service._policy import (
    PolicyHolder,
    PolicyKind,
    lease,
    settings_crosses,
    sync_catalog,
)
from memberlab.service.settings import Settings
from memberlab.store import DueImpression, Store
from memberlab.store._export import record_early_hold
from memberlab.value import (
    MemberValues,
    ValueFeedback,
    ValueRecommender,
    load_replicates,
    value_prices,
    values_from_model,
)

__all__ = [
    "VALUE",
    "VALUE_KIND",
    "ValueHolder",
    "check_plan",
    "load_replicates",
    "member_values_for",
    "new_value_recommender",
    "value_prices",
]

log = logging.getLogger(__name__)

VALUE = "value"


def member_values_for(settings: Settings) -> MemberValues:
    """The member values the settings describe (computed once per process)."""
    if not settings.choice_model:
        raise DataValidationError(
            "the value objective needs a choice model: --choice-model DIR, DIR written by "
            "'memberlab choice fit'."
        )
    return values_from_model(
        settings.choice_model, horizon=settings.value_horizon, prices=settings.prices
    )


def new_value_recommender(settings: Settings, spec: Any = None) -> ValueRecommender:
    """A fresh value recommender (version 0) from the settings."""
    rec = ValueRecommender(
        catalog=Catalog(),
        values=member_values_for(settings),
        crosses=settings_crosses(settings),
        propensity_draws=settings.propensity_draws,
    )
    _ = rec.models  # build now: decisions then run in many threads on a built model
    return rec


def _value_feedback(rec: ValueRecommender, rows: Sequence[DueImpression]) -> list[ValueFeedback]:
    plans = set(rec.plans)
    return [
        ValueFeedback(
            d.context,
            d.item_id,
            clicked=d.reward > 0,
            plan=d.plan if d.plan in plans else None,
            decision_id=d.decision_id,
        )
        for d in rows
        if d.item_id in rec.catalog
    ]


def _click_model(rec: ValueRecommender) -> CalloutRecommender:
    return rec.click_model


VALUE_KIND = PolicyKind(
    name=VALUE,
    load=ValueRecommender.from_bytes,
    new=new_value_recommender,
    feedback=_value_feedback,
    sync=sync_catalog,
    conversions=True,
    clicks=_click_model,
)


def check_plan(
    holder: ValueHolder | None, kind: str, type_: str, plan: str | None, where: str
) -> None:
    """Refuse an event's plan that the decision's kind cannot learn (422 naming it).

    A conversion of a value decision must name a plan of the choice model; a click never
    names one. Decisions of other kinds keep a conversion's plan as sent (stored only).
    """
    if plan is not None and type_ != "conversion":
        raise DataValidationError(f"{where}.plan: a {type_} carries no plan (only conversions).")
    if kind != VALUE or type_ != "conversion":
        return
    plans = [] if holder is None else holder.plans
    if plan is None:
        raise DataValidationError(
            f"{where}.plan: a conversion of a value decision must name its plan, one of {plans}."
        )
    if plan not in plans:
        raise DataValidationError(
            f"{where}.plan == {plan!r} is not a plan of the choice model; known plans: {plans}."
        )


def _with_values(rec: ValueRecommender, values: MemberValues) -> ValueRecommender:
    """``rec``'s learned models under new member values (the same plans)."""
    params = {**rec.get_params(), "values": values}
    out = ValueRecommender(**params)
    out._restore(rec._state_header(), rec._state_arrays())
    return out


class ValueHolder(PolicyHolder):
    """The value recommender this process serves from (the ``""`` space of kind
    ``"value"``), with the member values computed at start-up."""

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store, settings, VALUE_KIND)

    @property
    def values(self) -> MemberValues:
        return member_values_for(self.settings)

    @property
    def plans(self) -> list[str]:
        """The plans a conversion may name (non-anchor actions of the choice model)."""
        return [str(p) for p in self.values.plans]

    def ensure_initial(self) -> None:
        """Publish version 1 if there is no snapshot; when the newest snapshot holds other
        member values (another model, horizon or prices), publish it again with the
        start-up values, keeping what it learned when the plans are the same.

        Also records the configured ``early_hold`` in the database, so ``memberlab logs
        export --kind value`` reads each row's plan as the trainer does."""
        record_early_hold(self.store, self.settings.early_hold)
        values = self.values
        try:
            with lease(self.store, self.settings, wait=10.0):
                snap = self.store.load_snapshot(VALUE)
                if snap is None:
                    rec = new_value_recommender(self.settings)
                    sync_catalog(rec, self.store)
                    self.store.publish(VALUE, rec.to_bytes(), base_version=0, reason="init")
                    return
                old = ValueRecommender.from_bytes(snap.data)
                if old.values.to_dict() == values.to_dict():
                    return
                if old.plans == [str(p) for p in values.plans]:
                    rec = _with_values(old, values)
                else:
                    log.warning("plans changed from %s: the value policy starts afresh", old.plans)
                    rec = new_value_recommender(self.settings)
                    sync_catalog(rec, self.store)
                self.store.publish(
                    VALUE, rec.to_bytes(), base_version=snap.version, reason="member values"
                )
        except (StaleSnapshotError, LeaseBusyError):
            pass
