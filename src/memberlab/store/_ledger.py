"""Decisions, events and the pending-feedback ledger (impressions joined with events)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from memberlab.store import _schema as s
from memberlab.store._base import StoreBase
from memberlab.store._group import LoopGroupCommit, Rows
from memberlab.store._records import EVENT_CHUNK as _EVENT_CHUNK
from memberlab.store._records import DecisionRecord, DueImpression, EventRecord

_DCOLS = (
    "decisions (decision_id, kind, space, context, served, policy_version, seed, ts, "
    "ts_client, created_at, unit_id, assignment, candidates)"
)
_ICOLS = (
    "impressions (decision_id, item_id, kind, space, propensity, ts, deadline, status, "
    "policy_version)"
)
#: columns of an event row (:func:`_event_row`)
_ECOLS = "events (event_id, decision_id, item_id, type, value, ts, ts_client, plan, received_at)"
_GROUP_LOCK = threading.Lock()


def _due(rows: Sequence[Any], conversions: bool) -> list[DueImpression]:
    """Impression rows (with ``reward``, and ``plan`` when ``conversions``) as records."""
    return [
        DueImpression(
            r.decision_id,
            r.item_id,
            r.space,
            r.context,
            r.served,
            0.0 if r.reward is None else float(r.reward),
            r.plan if conversions else None,
        )
        for r in rows
    ]


def first_plan(early_hold: float) -> sa.Label[Any]:
    """The plan of an impression's earliest conversion that names one, among the events
    joined to it (times in ``[ts - early_hold, deadline]``), as a scalar subquery over
    ``impressions``: what the trainer learns for the value objective, and what the
    refit and the export read back."""
    i, e = s.impressions, s.events
    return (
        sa.select(e.c.plan)
        .where(
            e.c.decision_id == i.c.decision_id,
            e.c.item_id == i.c.item_id,
            e.c.ts >= i.c.ts - early_hold,
            e.c.ts <= i.c.deadline,
            e.c.type == "conversion",
            e.c.plan.is_not(None),
        )
        .order_by(e.c.ts, e.c.event_id)
        .limit(1)
        .scalar_subquery()
        .label("plan")
    )


def _decision_rows(
    decision: DecisionRecord, impressions: Sequence[tuple[str, float | None]], window: float
) -> Rows:
    """The decision row and impression rows of :data:`_DCOLS` and :data:`_ICOLS`."""
    drow = (
        decision.decision_id,
        decision.kind,
        decision.space,
        json.dumps(decision.context, separators=(",", ":")),
        json.dumps(decision.served, separators=(",", ":")),
        decision.policy_version,
        decision.seed,
        decision.ts,
        decision.ts_client,
        time.time(),
        decision.unit_id,
        decision.assignment,
        None if decision.candidates is None else json.dumps(decision.candidates),
    )
    irows = [
        (
            decision.decision_id,
            item_id,
            decision.kind,
            decision.space,
            prop,
            decision.ts,
            decision.ts + window,
            0,
            decision.policy_version,
        )
        for item_id, prop in impressions
    ]
    return drow, irows


def _event_rows(events: Sequence[EventRecord]) -> list[tuple[Any, ...]]:
    """The rows of :data:`_ECOLS` for ``events`` (an id twice: the first is kept)."""
    now = time.time()
    return [
        (e.event_id, e.decision_id, e.item_id, e.type, e.value, e.ts, e.ts_client, e.plan, now)
        for e in events
    ]


_GET_DECISIONS = sa.select(s.decisions).where(
    s.decisions.c.decision_id.in_(sa.bindparam("ids", expanding=True))
)


class LedgerMixin(StoreBase):
    """Decisions, events and the pending-feedback ledger (impressions joined with events)."""

    def log_decision(
        self,
        decision: DecisionRecord,
        impressions: Sequence[tuple[str, float | None]],
        *,
        window: float,
    ) -> None:
        """Log a decision and put its impressions in the pending ledger, in one commit.

        ``impressions`` holds ``(item_id, propensity)`` pairs; a layout decision has one
        impression with item id ``""``.
        """
        self._write_decisions([_decision_rows(decision, impressions, window)])

    async def log_decision_async(
        self,
        decision: DecisionRecord,
        impressions: Sequence[tuple[str, float | None]],
        *,
        window: float,
    ) -> None:
        """:meth:`log_decision` for a caller on an event loop, committed together with
        the other decisions queued meanwhile (group commit on the loop, never blocking it
        on the write lock); returns once the decision is committed."""
        group = self._group("_decision_group", self._try_write_decisions, self._write_decisions)
        await group.submit(_decision_rows(decision, impressions, window))

    def _group(
        self,
        name: str,
        try_write: Callable[[list[Any]], list[Any] | None],
        write: Callable[[list[Any]], list[Any]],
    ) -> LoopGroupCommit[Any, Any]:
        group = self.__dict__.get(name)
        if group is None:
            with _GROUP_LOCK:
                group = self.__dict__.get(name)
                if group is None:
                    group = self.__dict__[name] = LoopGroupCommit(try_write, write)
        return group

    # The hottest write of the service: plain SQL through the driver (one prepared
    # statement each), skipping SQLAlchemy's per-call statement handling.
    def _write_decisions(self, rows: list[Rows]) -> list[None]:
        self.sql.log_decisions(self, _DCOLS, _ICOLS, rows)
        return [None] * len(rows)

    def _try_write_decisions(self, rows: list[Rows]) -> list[None] | None:
        done = self.sql.log_decisions(self, _DCOLS, _ICOLS, rows, wait=False)
        return [None] * len(rows) if done else None

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The logged decisions among ``decision_ids`` (missing ids are left out)."""
        ids = sorted(set(decision_ids))
        out: dict[str, DecisionRecord] = {}
        with self._tx(write=False) as conn:
            for i in range(0, len(ids), _EVENT_CHUNK):
                rows = conn.execute(_GET_DECISIONS, {"ids": ids[i : i + _EVENT_CHUNK]}).all()
                for r in rows:
                    out[r.decision_id] = DecisionRecord(
                        r.decision_id,
                        r.kind,
                        r.space,
                        r.context,
                        r.served,
                        r.policy_version,
                        r.seed,
                        r.ts,
                        bool(r.ts_client),
                    )
        return out

    def add_events(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        """Insert events, ignoring any event id seen before; returns (accepted, duplicates).

        The insert is committed before this returns, so an acknowledged event is durable.
        """
        return self._write_events([_event_rows(events)])[0]

    async def add_events_async(self, events: Sequence[EventRecord]) -> tuple[int, int]:
        """:meth:`add_events` for a caller on an event loop: committed together with the
        other requests' events queued meanwhile, without blocking the loop on the write
        lock (a thread holding SQLite's lock while it waits for the GIL held decisions
        up for tens of milliseconds)."""
        group = self._group("_event_group", self._try_write_events, self._write_events)
        result: tuple[int, int] = await group.submit(_event_rows(events))
        return result

    def _write_events(self, batches: list[list[tuple[Any, ...]]]) -> list[tuple[int, int]]:
        added = self.sql.add_events(self, _ECOLS, batches)
        assert added is not None  # waiting, the write always happens
        return [(n, len(b) - n) for b, n in zip(batches, added, strict=True)]

    def _try_write_events(
        self, batches: list[list[tuple[Any, ...]]]
    ) -> list[tuple[int, int]] | None:
        added = self.sql.add_events(self, _ECOLS, batches, wait=False)
        if added is None:
            return None
        return [(n, len(b) - n) for b, n in zip(batches, added, strict=True)]

    def data_clock(self) -> float | None:
        """The latest client-supplied timestamp of any decision or event, if any."""
        with self._tx(write=False) as conn:
            a = conn.execute(
                sa.select(sa.func.max(s.decisions.c.ts)).where(s.decisions.c.ts_client.is_(True))
            ).scalar()
            b = conn.execute(
                sa.select(sa.func.max(s.events.c.ts)).where(s.events.c.ts_client.is_(True))
            ).scalar()
        vals = [float(v) for v in (a, b) if v is not None]
        return max(vals) if vals else None

    def due_impressions(
        self,
        kind: str,
        now: float,
        *,
        early_hold: float = 0.0,
        limit: int = 20_000,
        conversions: bool = False,
    ) -> list[DueImpression]:
        """Pending impressions whose attribution window closed by ``now``, with rewards.

        The same semantics as :class:`memberlab.callouts.PendingLedger`: an event joins
        its impression when its time lies in ``[t - early_hold, t + window]``; the reward
        is the largest joined event value (an event without a value counts 1), or 0 when
        no event joined. Oldest windows first, at most ``limit`` of them.

        With ``conversions=True`` (the value objective) the reward counts click events
        only, and ``plan`` is the plan of the earliest joined conversion that names one
        (as :class:`memberlab.value.ValueLedger` keeps clicks and plans apart).
        """
        i, d, e = s.impressions, s.decisions, s.events
        joined = (
            e.c.decision_id == i.c.decision_id,
            e.c.item_id == i.c.item_id,
            e.c.ts >= i.c.ts - early_hold,
            e.c.ts <= i.c.deadline,
        )
        reward_q = sa.select(sa.func.max(sa.func.coalesce(e.c.value, 1.0))).where(*joined)
        if conversions:
            reward_q = reward_q.where(e.c.type == "click")
        extra = [first_plan(early_hold)] if conversions else []
        reward = reward_q.scalar_subquery()
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(
                    i.c.decision_id,
                    i.c.item_id,
                    i.c.space,
                    d.c.context,
                    d.c.served,
                    reward.label("reward"),
                    *extra,
                )
                .select_from(i.join(d, d.c.decision_id == i.c.decision_id))
                .where(i.c.status == 0, i.c.kind == kind, i.c.deadline <= now)
                .order_by(i.c.deadline, i.c.decision_id, i.c.item_id)
                .limit(limit)
            ).all()
        return _due(rows, conversions)

    def outcome_counts(self, kind: str, space: str = "") -> dict[str, tuple[int, int]]:
        """Closed impressions and positives per item id: ``{item: (closed, positives)}``."""
        i = s.impressions
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(
                    i.c.item_id,
                    sa.func.count(),
                    sa.func.sum(sa.case((i.c.reward > 0, 1), else_=0)),
                )
                .where(i.c.kind == kind, i.c.space == space, i.c.status == 1)
                .group_by(i.c.item_id)
            ).all()
        return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    def next_deadline(self, kind: str | None = None) -> float | None:
        """When the earliest open attribution window closes (``None``: none is open)."""
        i = s.impressions
        q = sa.select(sa.func.min(i.c.deadline)).where(i.c.status == 0)
        if kind:
            q = q.where(i.c.kind == kind)
        with self._tx(write=False) as conn:
            v = conn.execute(q).scalar()
        return None if v is None else float(v)

    def closed_impressions(
        self,
        kind: str,
        space: str = "",
        *,
        conversions: bool = False,
        early_hold: float = 0.0,
    ) -> list[DueImpression]:
        """Every impression whose feedback has been applied, in the order it closed.

        ``reward`` is what the trainer applied. With ``conversions=True`` (the value
        objective) ``plan`` is the plan of the earliest conversion joined in the window
        (events from ``early_hold`` seconds before the impression), as
        :meth:`due_impressions` read it when the impression closed.
        """
        i, d = s.impressions, s.decisions
        extra = [first_plan(early_hold)] if conversions else []
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(
                    i.c.decision_id,
                    i.c.item_id,
                    i.c.space,
                    d.c.context,
                    d.c.served,
                    i.c.reward,
                    *extra,
                )
                .select_from(i.join(d, d.c.decision_id == i.c.decision_id))
                .where(i.c.status == 1, i.c.kind == kind, i.c.space == space)
                .order_by(i.c.closed_at, i.c.ts)
            ).all()
        return _due(rows, conversions)

    def traffic(
        self, kind: str, *, bucket: float = 60.0, limit: int = 50_000
    ) -> list[tuple[float, str, int]]:
        """Impressions served per time bucket and item: ``(bucket start, item, count)``,
        over the most recent ``limit`` impressions (oldest bucket first)."""
        i = s.impressions
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(i.c.ts, i.c.item_id, i.c.space)
                .where(i.c.kind == kind)
                .order_by(i.c.ts.desc())
                .limit(limit)
            ).all()
        counts: dict[tuple[float, str], int] = {}
        for r in rows:
            key = (float(r.ts) // bucket * bucket, r.item_id or r.space)
            counts[key] = counts.get(key, 0) + 1
        return sorted((b, item, n) for (b, item), n in counts.items())
