"""Pending-feedback ledger: impressions wait for an attribution window.

Time is always passed in (seconds, or any monotone unit), never read from a clock, so the
ledger is deterministic given the times it is told.

- :meth:`PendingLedger.add_decision` opens a window of length ``window`` for every item
  served by a decision at time ``t``.
- :meth:`PendingLedger.add_event` joins a click or conversion by ``(decision_id,
  item_id)``. An event id counts once (``"duplicate"`` after that). An event whose
  decision is not known yet is ``"held"`` for ``early_hold`` time units (measured from
  the event's time) and joined if the decision arrives in time; otherwise it is dropped
  at the next :meth:`close`. An event outside its decision's window, or for a decision
  already closed, is ``"late"`` and ignored.
- :meth:`PendingLedger.close` closes every window that ended by ``now`` and returns one
  :class:`~memberlab.callouts.Feedback` per served item: the reward is the largest event
  value joined to it (a click counts 1 unless it carries a value), or 0 when no event
  came. Records come out in (decision time, decision id, slot) order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from memberlab._errors import DataValidationError, UnknownItemError
from memberlab.callouts.recommender import Feedback

__all__ = ["EventStatus", "LedgerStats", "PendingLedger"]

EventStatus = Literal["accepted", "duplicate", "held", "late"]


@dataclass(slots=True)
class _Pending:
    item_ids: list[str]
    context: dict[str, Any]
    t: float
    rewards: dict[str, float]


@dataclass(frozen=True, slots=True)
class _Held:
    event_id: str
    decision_id: str
    item_id: str
    t: float
    value: float


@dataclass(slots=True)
class LedgerStats:
    """Counters since the ledger was created."""

    decisions: int = 0
    accepted: int = 0
    duplicates: int = 0
    held: int = 0
    joined_from_hold: int = 0
    dropped_early: int = 0
    late: int = 0
    closed: int = 0


@dataclass(slots=True)
class PendingLedger:
    """Joins delayed events to decisions and closes attribution windows.

    Parameters
    ----------
    window : float
        Attribution window after a decision (> 0).
    early_hold : float
        How long an event may wait for its decision (>= 0); also how far before its
        decision's time an event may be stamped and still count (clock skew).

    Examples
    --------
    >>> led = PendingLedger(window=60.0, early_hold=5.0)
    >>> led.add_decision("d1", ["a", "b"], {"page": "home"}, t=0.0)
    >>> led.add_event("e1", "d1", "b", "click", t=10.0)
    'accepted'
    >>> [(f.item_id, f.reward) for f in led.close(now=60.0)]
    [('a', 0.0), ('b', 1.0)]
    """

    window: float
    early_hold: float
    stats: LedgerStats = field(default_factory=LedgerStats)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _closed: set[str] = field(default_factory=set)
    _seen_events: set[str] = field(default_factory=set)
    _held: dict[str, list[_Held]] = field(default_factory=dict)
    _now: float = -math.inf

    def __post_init__(self) -> None:
        if not (self.window > 0 and math.isfinite(self.window)):
            raise DataValidationError(f"window == {self.window}, must be positive and finite.")
        if not (self.early_hold >= 0 and math.isfinite(self.early_hold)):
            raise DataValidationError(f"early_hold == {self.early_hold}, must be >= 0 and finite.")

    # ------------------------------------------------------------------ input
    def add_decision(
        self, decision_id: str, item_ids: Sequence[str], context: Mapping[str, Any], t: float
    ) -> None:
        """Open windows for the items a decision served at time ``t``.

        Adding a known decision id again is a no-op (idempotent retries).
        """
        _check_time(t, "t")
        if decision_id in self._pending or decision_id in self._closed:
            return
        items = list(item_ids)
        if not items or len(set(items)) != len(items):
            raise DataValidationError(
                f"item_ids == {items!r}, must be a non-empty list without repeats."
            )
        pend = _Pending(items, dict(context), float(t), {})
        self._pending[decision_id] = pend
        self.stats.decisions += 1
        for h in self._held.pop(decision_id, []):
            self.stats.held -= 1
            if self._join(pend, h.item_id, h.t, h.value):
                self.stats.joined_from_hold += 1
                self.stats.accepted += 1
            else:
                self.stats.late += 1

    def add_event(
        self,
        event_id: str,
        decision_id: str,
        item_id: str,
        kind: str,
        t: float,
        value: float | None = None,
    ) -> EventStatus:
        """Record a click or conversion; returns what became of it.

        Parameters
        ----------
        event_id : str
            Unique id of the event; repeats return ``"duplicate"`` and change nothing.
        kind : str
            ``"click"``, ``"conversion"`` or another label (all count as rewards).
        value : float, optional
            Reward value (default 1).

        Raises
        ------
        UnknownItemError
            When the decision is known and did not serve ``item_id``.
        """
        _check_time(t, "t")
        if not kind:
            raise DataValidationError(f"kind == {kind!r}, must be a non-empty string.")
        v = 1.0 if value is None else float(value)
        if not math.isfinite(v):
            raise DataValidationError(f"value == {value!r}, must be finite.")
        pend = self._pending.get(decision_id)
        if pend is not None and item_id not in pend.item_ids:
            raise UnknownItemError(
                f"item_id == {item_id!r} was not served by decision {decision_id!r} "
                f"(served: {pend.item_ids})."
            )
        if event_id in self._seen_events:
            self.stats.duplicates += 1
            return "duplicate"
        self._seen_events.add(event_id)
        if decision_id in self._closed:
            self.stats.late += 1
            return "late"
        if pend is None:
            self._held.setdefault(decision_id, []).append(
                _Held(event_id, decision_id, item_id, float(t), v)
            )
            self.stats.held += 1
            return "held"
        if self._join(pend, item_id, float(t), v):
            self.stats.accepted += 1
            return "accepted"
        self.stats.late += 1
        return "late"

    def _join(self, pend: _Pending, item_id: str, t: float, value: float) -> bool:
        if item_id not in pend.item_ids:
            return False
        if not pend.t - self.early_hold <= t <= pend.t + self.window:
            return False
        pend.rewards[item_id] = max(pend.rewards.get(item_id, value), value)
        return True

    # ------------------------------------------------------------------ output
    def close(self, now: float) -> list[Feedback]:
        """Close every window ending at or before ``now``; drop stale held events.

        ``now`` must not go backwards. Returns one Feedback per served item of each
        closed decision, with ``decision_id`` set.
        """
        _check_time(now, "now")
        if now < self._now:
            raise DataValidationError(f"now == {now} is before the last close ({self._now}).")
        self._now = float(now)
        due = [(p.t, d) for d, p in self._pending.items() if p.t + self.window <= now]
        due.sort()
        out: list[Feedback] = []
        for _, did in due:
            pend = self._pending.pop(did)
            self._closed.add(did)
            for item in pend.item_ids:
                out.append(Feedback(pend.context, item, pend.rewards.get(item, 0.0), did))
        self.stats.closed += len(due)
        for did in sorted(self._held):
            keep = [h for h in self._held[did] if now - h.t <= self.early_hold]
            dropped = len(self._held[did]) - len(keep)
            self.stats.dropped_early += dropped
            self.stats.held -= dropped
            if keep:
                self._held[did] = keep
            else:
                del self._held[did]
        return out

    @property
    def n_pending(self) -> int:
        """Decisions whose window is still open."""
        return len(self._pending)

    @property
    def n_held(self) -> int:
        """Events waiting for their decision."""
        return sum(len(v) for v in self._held.values())

    def pending_ids(self) -> list[str]:
        return sorted(self._pending)


def _check_time(t: float, name: str) -> None:
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise DataValidationError(f"{name} == {t!r}, must be a finite number.")
