"""Administration: ``/v1/admin/train``, ``priors/refit``, ``traffic``, ``stats`` (admin)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query

from memberlab.callouts import RefitResult
from memberlab.service.deps import AdminKey, Services, Svc
from memberlab.service.routes._common import responses
from memberlab.service.schemas import (
    ModelRefitOut,
    PriorOut,
    RefitIn,
    RefitOut,
    StatsOut,
    TrafficOut,
    TrafficRow,
    TrainOut,
    finite_or_none,
)
from memberlab.value._bandit import CLICK

router = APIRouter(tags=["admin"])
_BUSY = responses(_503="The trainer lease is busy; retry.")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def next_window(svc: Services, now: float) -> tuple[float | None, float | None]:
    """When the earliest open window closes, and in how many seconds from ``now``."""
    at = svc.store.next_deadline()
    return at, None if at is None else max(0.0, at - now)


@router.post("/train", response_model=TrainOut, responses=_BUSY)
def train(svc: Svc, _: AdminKey) -> TrainOut:
    """Run one trainer step now and say what it did; when it closed nothing, say why and
    when the next attribution window closes."""
    result = svc.trainer.step(wait=10.0)
    now = result.now if result.now is not None else svc.trainer.clock()[0]
    at, in_ = next_window(svc, now)
    reason = result.reason
    if result.ran and not result.closed:
        window = svc.settings.attribution_window
        if at is None:
            reason += ": no impression is waiting for feedback"
        else:
            reason += (
                f": no attribution window has closed yet (windows last {window:g} s on the "
                f"{result.clock} clock); the next closes at {_iso(at)}, in {in_:.0f} s"
            )
    pending = svc.store.stats(svc.served_kind).pending if result.ran else 0
    return TrainOut(
        **{**result.to_dict(), "reason": reason},
        pending=pending,
        next_window_closes_at=at,
        next_window_closes_in=in_,
    )


@router.post("/priors/refit", response_model=RefitOut, responses=_BUSY)
def refit(svc: Svc, _: AdminKey, body: RefitIn | None = None) -> RefitOut:
    """Refit the empirical-Bayes meta-priors of the policy serving callout decisions from
    its own closed impressions and retrain in hindsight.

    Under ``--objective value`` that is the value policy: every underlying model (clicks
    and each plan) is refitted on the impressions' clicks and the plans they converted to
    (``models``); ``priors`` and ``n_replayed`` are the click model's.
    """
    method = body.method if body else "deconvolved"
    store = svc.store
    holder = svc.served
    kind = holder.kind
    rows = store.closed_impressions(
        kind.name, conversions=kind.conversions, early_hold=svc.settings.early_hold
    )

    def change(policy: Any) -> tuple[dict[str, RefitResult], int]:
        log_ = kind.feedback(policy, rows)  # the trainer's own feedback records
        result = policy.refit_priors(log_, method=method)
        # a value policy refits one model per name; a clicks policy is its click model
        per_model = dict(result) if isinstance(result, Mapping) else {CLICK: result}
        return per_model, len(log_)

    (results, n), version = holder.publish_change(change, reason="refit")

    def priors(r: RefitResult) -> dict[str, PriorOut]:
        return {
            g: PriorOut(mean=finite_or_none(p.mean), var=finite_or_none(p.var))
            for g, p in r.priors.items()
        }

    click = results[CLICK]
    return RefitOut(
        policy_version=version,
        method=method,
        n_feedback=n,
        n_replayed=click.n_replayed,
        priors=priors(click),
        models={
            name: ModelRefitOut(n_replayed=r.n_replayed, priors=priors(r))
            for name, r in results.items()
        }
        if svc.value is not None
        else {},
    )


@router.get("/traffic", response_model=TrafficOut)
def traffic(
    svc: Svc,
    _: AdminKey,
    bucket: float = Query(60.0, gt=0, le=86_400, description="Bucket width in seconds."),
) -> TrafficOut:
    """Callouts served per time bucket and item (the most recent 50,000 impressions)."""
    rows = svc.store.traffic(svc.served_kind, bucket=bucket)
    return TrafficOut(
        bucket=bucket,
        rows=[TrafficRow(start=finite_or_none(b), item_id=item, count=n) for b, item, n in rows],
    )


@router.get("/stats", response_model=StatsOut)
def stats(svc: Svc, _: AdminKey) -> StatsOut:
    """Counts read from the database, the trainer's clock and when the next attribution
    window closes (the earliest moment ``POST /v1/admin/train`` has something to do)."""
    s = svc.store.stats()
    now, clock = svc.trainer.clock()
    at, in_ = next_window(svc, now)
    never, _version = svc.served.run_clicks(lambda rec: rec.never_fired_crosses())
    return StatsOut(
        decisions=s.decisions,
        events=s.events,
        pending=s.pending,
        policy_version=svc.store.latest_version(svc.served_kind),
        closed=s.closed,
        positives=s.positives,
        clock=clock,
        now=now,
        next_window_closes_at=at,
        next_window_closes_in=in_,
        attribution_window=svc.settings.attribution_window,
        crosses=list(svc.settings.crosses),
        never_fired_crosses=[f"{key}:{attr}" for key, attr in never],
    )
