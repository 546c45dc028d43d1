"""Administration: ``/v1/admin/train``, ``priors/refit``, ``traffic``, ``stats`` (admin)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query

from memberlab.callouts import CalloutRecommender, Feedback
from memberlab.service._policy import KIND
from memberlab.service.deps import AdminKey, Services, Svc
from memberlab.service.routes._common import responses
from memberlab.service.schemas import (
    PriorOut,
    RefitIn,
    RefitOut,
    StatsOut,
    TrafficOut,
    TrafficRow,
    TrainOut,
    finite_or_none,
)

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
    served = KIND if svc.value is None else "value"  # the kind callout decisions are logged as
    pending = svc.store.stats(served).pending if result.ran else 0
    return TrainOut(
        **{**result.to_dict(), "reason": reason},
        pending=pending,
        next_window_closes_at=at,
        next_window_closes_in=in_,
    )


@router.post("/priors/refit", response_model=RefitOut, responses=_BUSY)
def refit(svc: Svc, _: AdminKey, body: RefitIn | None = None) -> RefitOut:
    """Refit the empirical-Bayes meta-priors from the logs and retrain in hindsight."""
    method = body.method if body else "deconvolved"
    store = svc.store

    def change(rec: CalloutRecommender) -> object:
        log_ = [
            Feedback(d.context, d.item_id, d.reward, d.decision_id)
            for d in store.closed_impressions(KIND)
            if d.item_id in rec.catalog
        ]
        return rec.refit_priors(log_, method=method), len(log_)

    (result, n), version = svc.callouts.publish_change(change, reason="refit")
    return RefitOut(
        policy_version=version,
        method=method,
        n_feedback=n,
        n_replayed=result.n_replayed,
        priors={
            g: PriorOut(mean=finite_or_none(p.mean), var=finite_or_none(p.var))
            for g, p in result.priors.items()
        },
    )


@router.get("/traffic", response_model=TrafficOut)
def traffic(
    svc: Svc,
    _: AdminKey,
    bucket: float = Query(60.0, gt=0, le=86_400, description="Bucket width in seconds."),
) -> TrafficOut:
    """Callouts served per time bucket and item (the most recent 50,000 impressions)."""
    rows = svc.store.traffic(KIND, bucket=bucket)
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
    never, _version = svc.callouts.call(lambda rec: rec.never_fired_crosses())
    return StatsOut(
        decisions=s.decisions,
        events=s.events,
        pending=s.pending,
        policy_version=svc.store.latest_version(KIND),
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
