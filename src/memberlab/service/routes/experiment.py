"""The holdout readout, the export pages and recorded evaluations (admin):
``GET /v1/admin/experiment``, ``GET /v1/admin/logs``, ``GET /v1/admin/evaluations``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from memberlab.service._experiment import experiment_report
from memberlab.service.deps import AdminKey, Svc
from memberlab.service.routes._common import responses
from memberlab.service.schemas import ReportOut, finite_or_none
from memberlab.store._export import export_page, kind_hint, parse_time

router = APIRouter(tags=["admin"])
_BAD = responses(_422="A parameter is out of range or malformed.")

KindQ = Query(
    None,
    pattern="^(callouts|layouts|value)$",
    description="callouts, layouts or value (the callouts of --objective value); default: "
    "the kind this service serves callouts as (value under --objective value, else callouts).",
)
SpaceQ = Query(None, max_length=200, description="Layout space (default: every space).")
SinceQ = Query(None, max_length=40, description="ISO 8601 time or epoch seconds (inclusive).")
UntilQ = Query(None, max_length=40, description="ISO 8601 time or epoch seconds (exclusive).")


def clean(x: Any) -> Any:
    """JSON-ready: non-finite floats become null."""
    if isinstance(x, float):
        return finite_or_none(x)
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x


@router.get("/experiment", response_model=ReportOut, responses=_BAD)
def experiment(
    svc: Svc,
    _: AdminKey,
    kind: str | None = KindQ,
    space: str | None = SpaceQ,
    since: str | None = SinceQ,
    until: str | None = UntilQ,
    level: float = Query(0.95, gt=0, lt=1, description="Interval level."),
    holdout_fraction: float | None = Query(
        None, gt=0, lt=1, description="Fraction the SRM test expects (default: the configured)."
    ),
    every: float | None = Query(
        None, gt=0, description="Seconds per point of the lift series (default: about 20 points)."
    ),
    tuning_units: float = Query(10_000, gt=0, description="Units the sequence is tuned for."),
) -> ReportOut:
    """The holdout readout: per arm units, decisions, reward per decision and per unit;
    the lift with a unit-clustered interval, an always-valid confidence sequence and a
    sample-ratio-mismatch test against the configured fraction; the cumulative lift over
    time (``series``). Decisions whose windows are still open are left out
    (``decisions_pending``). ``ready`` is false until each arm has two units."""
    kind = kind or svc.served_kind
    exp = svc.experiment
    frac = holdout_fraction if holdout_fraction is not None else (exp.fraction or None)
    out = experiment_report(
        svc.store, kind, space=space, since=parse_time(since, "since"),
        until=parse_time(until, "until"), holdout_fraction=frac, level=level,
        cs_tuning_units=tuning_units, every=every,
    )  # fmt: skip
    out["experiment"] = exp.describe()
    out["query"] = {"kind": kind, "space": space, "since": since, "until": until}
    return ReportOut(clean(out))


@router.get("/logs", response_model=ReportOut, responses=_BAD)
def logs(
    svc: Svc,
    _: AdminKey,
    kind: str | None = KindQ,
    space: str | None = SpaceQ,
    since: str | None = SinceQ,
    until: str | None = UntilQ,
    cursor: str | None = Query(None, max_length=600, description="next_cursor of a page."),
    limit: int = Query(1000, ge=1, le=10_000, description="Rows per page."),
) -> ReportOut:
    """One page of the rows of ``memberlab logs export`` (one per served choice, in the
    export's order); pass ``next_cursor`` back for the next page (null at the end). A
    first page without a row has a ``note`` when the other callouts kind has rows."""
    kind = kind or svc.served_kind
    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    rows, nxt = export_page(
        svc.store, kind=kind, space=space, since=t0, until=t1, cursor=cursor, limit=limit
    )
    out: dict[str, Any] = {"rows": rows, "next_cursor": nxt, "count": len(rows), "kind": kind}
    if not rows and cursor is None:
        note = kind_hint(svc.store, kind, space=space, since=t0, until=t1)
        if note is not None:
            out["note"] = note
    return ReportOut(clean(out))


@router.get("/evaluations", response_model=ReportOut)
def evaluations(
    svc: Svc,
    _: AdminKey,
    limit: int = Query(20, ge=1, le=200, description="How many, newest first."),
    kind: str | None = Query(None, max_length=16, description="Only this kind (ope, ...)."),
) -> ReportOut:
    """Offline evaluations recorded with ``memberlab evaluate logs --record``, newest
    first: ``kind`` (``ope`` or ``candidates``), ``label``, ``result`` (the command's
    JSON) and ``created_at``."""
    rows = svc.store.list_evaluations(limit=limit, kind=kind)
    return ReportOut(
        clean(
            {
                "evaluations": [
                    {"seq": e.seq, "kind": e.kind, "label": e.label, "result": e.result,
                     "created_at": e.created_at}
                    for e in rows
                ]
            }
        )
    )  # fmt: skip
