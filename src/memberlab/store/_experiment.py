"""What the holdout experiment and the recorded evaluations read and write.

The experiment's salt lives in the ``meta`` table (set once, so assignment survives
restarts); :meth:`ExperimentMixin.iter_experiment_decisions` is the readout's one query
(one row per decision, its reward summed over its impressions, streamed in batches);
``evaluations`` holds the JSON results of offline evaluations for the dashboard.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from memberlab._errors import DataValidationError
from memberlab.store import _schema as s
from memberlab.store._base import StoreBase

__all__ = ["EvaluationRecord", "ExperimentDecisions", "ExperimentMixin"]


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """A recorded offline evaluation: ``result`` is the command's JSON output."""

    seq: int
    kind: str
    label: str
    result: Any
    created_at: float


@dataclass(frozen=True, slots=True)
class ExperimentDecisions:
    """Decisions made under an experiment, one entry per decision, in time order.

    ``reward`` is the sum of the rewards of the decision's impressions (its clicks over
    every served item); ``closed`` says whether every impression's window has closed
    (a decision with an open window has no reward yet).
    """

    decision_id: list[str]
    ts: list[float]
    unit_id: list[str | None]
    assignment: list[str]
    reward: list[float]
    closed: list[bool]


class ExperimentMixin(StoreBase):
    """The experiment's salt, its decisions, and recorded offline evaluations."""

    def setdefault_meta(self, key: str, value: str) -> str:
        """The value of ``key`` in the meta table, set to ``value`` first if it has none
        (atomic: concurrent callers all get the first writer's value)."""
        stmt = self._insert(s.meta).values(key=key, value=value).on_conflict_do_nothing()
        with self._tx() as conn:
            conn.execute(stmt)
            v = conn.execute(sa.select(s.meta.c.value).where(s.meta.c.key == key)).scalar()
        return str(v)

    def experiment_decisions(
        self,
        kind: str,
        *,
        space: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> ExperimentDecisions:
        """Every decision of ``kind`` with an experiment arm, ``since <= ts < until``
        (all in memory: :meth:`iter_experiment_decisions` streams the same rows)."""
        parts = list(self.iter_experiment_decisions(kind, space=space, since=since, until=until))
        return ExperimentDecisions(
            *([x for p in parts for x in getattr(p, f.name)] for f in fields(ExperimentDecisions))
        )

    def iter_experiment_decisions(
        self,
        kind: str,
        *,
        space: str | None = None,
        since: float | None = None,
        until: float | None = None,
        batch_size: int = 10_000,
    ) -> Iterator[ExperimentDecisions]:
        """The decisions of :meth:`experiment_decisions` in batches of ``batch_size``, in
        time order, from one streamed query (the database sorts and groups; this process
        holds one batch at a time)."""
        if batch_size < 1:
            raise DataValidationError(f"batch_size == {batch_size}, must be >= 1.")
        q = self._experiment_query(kind, space, since, until).order_by(
            s.decisions.c.ts, s.decisions.c.decision_id
        )
        with self._tx(write=False) as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(q)
            for rows in result.partitions(batch_size):
                yield ExperimentDecisions(
                    [r.decision_id for r in rows],
                    [float(r.ts) for r in rows],
                    [r.unit_id for r in rows],
                    [str(r.assignment) for r in rows],
                    [float(r.reward or 0.0) for r in rows],
                    [int(r.lo) == 1 and int(r.hi) == 1 for r in rows],
                )

    def has_decisions(
        self,
        kind: str,
        *,
        with_arm: bool = False,
        space: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> bool:
        """Whether any decision of ``kind`` (with an experiment arm, if ``with_arm``) has
        ``since <= ts < until`` (one indexed look-up: used to say where a reader's
        decisions are when the kind it asked for has none)."""
        d = s.decisions
        q = sa.select(d.c.decision_id).where(d.c.kind == kind)
        if with_arm:
            q = q.where(d.c.assignment.is_not(None))
        q = _window(q, space, since, until)
        with self._tx(write=False) as conn:
            return conn.execute(q.limit(1)).first() is not None

    def experiment_time_range(
        self,
        kind: str,
        *,
        space: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[float, float] | None:
        """First and last time of the closed decisions of :meth:`experiment_decisions`
        (None when there is none): the grid of the readout's series, before streaming."""
        sub = self._experiment_query(kind, space, since, until).subquery()
        q = sa.select(sa.func.min(sub.c.ts), sa.func.max(sub.c.ts)).where(
            sub.c.lo == 1, sub.c.hi == 1
        )
        with self._tx(write=False) as conn:
            lo, hi = conn.execute(q).one()
        return None if lo is None else (float(lo), float(hi))

    def _experiment_query(
        self, kind: str, space: str | None, since: float | None, until: float | None
    ) -> sa.Select[Any]:
        """One row per decision with an arm: its reward summed over its impressions and
        the lowest and highest status of its impressions (closed when both are 1)."""
        if since is not None and until is not None and until < since:
            raise DataValidationError(f"until == {until} is before since == {since}.")
        d, i = s.decisions, s.impressions
        q = (
            sa.select(
                d.c.decision_id,
                d.c.ts,
                d.c.unit_id,
                d.c.assignment,
                sa.func.sum(sa.func.coalesce(i.c.reward, 0.0)).label("reward"),
                sa.func.min(i.c.status).label("lo"),
                sa.func.max(i.c.status).label("hi"),
            )
            .select_from(d.join(i, i.c.decision_id == d.c.decision_id))
            .where(d.c.kind == kind, d.c.assignment.is_not(None))
            .group_by(d.c.decision_id, d.c.ts, d.c.unit_id, d.c.assignment)
        )
        return _window(q, space, since, until)

    def record_evaluation(self, kind: str, label: str, result: Any) -> int:
        """Store an offline evaluation's JSON result; returns its sequence number."""
        if not kind or len(kind) > 16:
            raise DataValidationError(f"kind == {kind!r}, must be 1 to 16 characters.")
        label = label[:200]
        json.dumps(result, allow_nan=False)  # refuse what the JSON column cannot hold
        with self._tx() as conn:
            seq = conn.execute(
                sa.insert(s.evaluations)
                .values(kind=kind, label=label, result=result, created_at=time.time())
                .returning(s.evaluations.c.seq)
            ).scalar_one()
        return int(seq)

    def list_evaluations(
        self, *, limit: int = 20, kind: str | None = None
    ) -> list[EvaluationRecord]:
        """The latest recorded evaluations, newest first."""
        t = s.evaluations
        q = sa.select(t).order_by(t.c.seq.desc()).limit(limit)
        if kind:
            q = q.where(t.c.kind == kind)
        with self._tx(write=False) as conn:
            rows = conn.execute(q).all()
        return [
            EvaluationRecord(int(r.seq), r.kind, r.label, r.result, float(r.created_at))
            for r in rows
        ]


def _window(q: Any, space: str | None, since: float | None, until: float | None) -> Any:
    """``q`` narrowed to decisions of ``space`` with ``since <= ts < until`` (each if given)."""
    d = s.decisions
    if space is not None:
        q = q.where(d.c.space == space)
    if since is not None:
        q = q.where(d.c.ts >= since)
    if until is not None:
        q = q.where(d.c.ts < until)
    return q
