"""Health and metrics: ``GET /healthz``, ``GET /metrics``."""

from __future__ import annotations

import gc
import os

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from memberlab.service.deps import Services, Svc
from memberlab.service.schemas import HealthOut

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthOut)
def healthz(svc: Svc) -> HealthOut:
    """Liveness and readiness: the database answers.

    ``policy_version`` is the newest snapshot in the database of the policy serving
    callout decisions (the value policy under ``--objective value``), ``serving_version``
    the one this process serves from, ``pid`` the process (for multi-worker checks).
    """
    _, serving = svc.served.current()
    return HealthOut(
        status="ok",
        policy_version=svc.store.latest_version(svc.served_kind),
        serving_version=serving,
        pid=os.getpid(),
    )


def metrics_text(svc: Services, request_metrics: str = "") -> str:
    """Prometheus text: counts read from the database, then this worker's request metrics."""
    now, _ = svc.trainer.clock()
    s = svc.store.stats(now=now)
    last = svc.trainer.last_result
    nxt = svc.store.next_deadline()
    # the policy serving callout decisions (the value policy under --objective value)
    version = svc.store.latest_version(svc.served_kind)
    serving = svc.served.version_of("")
    lines = [
        ("memberlab_decisions_total", "counter", "Decisions logged.", s.decisions),
        ("memberlab_events_total", "counter", "Events acknowledged.", s.events),
        ("memberlab_pending_impressions", "gauge", "Impressions in open windows.", s.pending),
        ("memberlab_closed_impressions_total", "counter", "Impressions closed.", s.closed),
        (
            "memberlab_trainer_lag_seconds",
            "gauge",
            "Age of the oldest closed window not yet trained on.",
            s.extra.get("trainer_lag_seconds", 0.0),
        ),
        (
            "memberlab_next_window_closes_in_seconds",
            "gauge",
            "Seconds until the earliest open attribution window closes (-1: none open).",
            -1.0 if nxt is None else max(0.0, nxt - now),
        ),
        ("memberlab_policy_version", "gauge", "Newest callout snapshot.", version),
        ("memberlab_serving_policy_version", "gauge", "Version served here.", serving),
        (
            "memberlab_trainer_last_step_seconds",
            "gauge",
            "Duration of this process's last trainer step.",
            last.seconds if last else 0.0,
        ),
    ]
    out: list[str] = []
    for name, kind, help_, value in lines:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {float(value)}"]
    return "\n".join(out + _gc_lines()) + "\n" + request_metrics


def _gc_lines() -> list[str]:
    """This worker's garbage collector: objects frozen at start-up (memberlab serve's
    workers freeze their heap, see :mod:`memberlab.service._heap`) and collections run."""
    w = f'worker="{os.getpid()}"'
    out = [
        "# HELP memberlab_gc_frozen_objects Objects exempt from garbage collection here.",
        "# TYPE memberlab_gc_frozen_objects gauge",
        f"memberlab_gc_frozen_objects{{{w}}} {float(gc.get_freeze_count())}",
        "# HELP memberlab_gc_collections_total Garbage collections run here, by generation.",
        "# TYPE memberlab_gc_collections_total counter",
    ]
    for gen, st in enumerate(gc.get_stats()):
        out.append(
            f'memberlab_gc_collections_total{{generation="{gen}",{w}}} {float(st["collections"])}'
        )
    return out


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(svc: Svc, request: Request) -> str:
    """Prometheus text format: counts read from the database, and this worker's request
    latency histograms and error counters per route (label ``worker`` = process id)."""
    recorder = getattr(request.app.state, "request_metrics", None)
    return metrics_text(svc, recorder.render() if recorder is not None else "")
