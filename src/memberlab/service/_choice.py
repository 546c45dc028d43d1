"""Membership counterfactuals for the service: a thin layer over :mod:`memberlab.choice`.

The model directory written by ``memberlab choice fit`` is loaded once per process; a
query is parsed and bounded here, the simulation is :func:`memberlab.choice.counterfactual`
itself, and its tables are turned into JSON rows. Results are cached per query.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memberlab._errors import ChoiceQueryError
from memberlab.choice import ChoiceResults, counterfactual

__all__ = [
    "MAX_MEMBERS",
    "MAX_MONTHS",
    "MAX_SHIFT",
    "ChoiceHolder",
    "ChoiceQuery",
    "ChoiceQueryError",
    "parse_query",
]

MAX_MONTHS = 60
MAX_MEMBERS = 20_000
MAX_SHIFT = 100.0
LEVEL = 0.95
_CACHE_SIZE = 128


@dataclass(frozen=True, slots=True)
class ChoiceQuery:
    """A normalised counterfactual query (hashable: the cache key)."""

    shift: tuple[tuple[str, float], ...]
    prices: tuple[tuple[str, str | float], ...]
    months: int
    members: int
    seed: int


def _pairs(items: Sequence[str], name: str, example: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label.strip() or not value.strip():
            raise ChoiceQueryError(f"{name} == {item!r}, must look like {example}.")
        out.append((label.strip(), value.strip()))
    return out


def parse_query(
    results: ChoiceResults,
    *,
    shift: Sequence[str],
    price: Sequence[str],
    months: int,
    members: int,
    seed: int,
) -> ChoiceQuery:
    """Check a query against the model: known actions, finite bounded deltas, prices.

    ``shift`` items are ``ACTION=DELTA`` (DELTA is added to the action's reward in every
    state); ``price`` items are ``ACTION=STATE_COLUMN`` or ``ACTION=AMOUNT``.
    """
    actions = [str(a) for a in results.actions]
    shifts: dict[str, float] = {}
    for label, value in _pairs(shift, "shift", "ACTION=DELTA (e.g. monthly=-0.3)"):
        if label not in actions:
            raise ChoiceQueryError(f"shift: action {label!r} is not among {actions}.")
        if label in shifts:
            raise ChoiceQueryError(f"shift: action {label!r} is given twice.")
        try:
            delta = float(value)
        except ValueError:
            raise ChoiceQueryError(
                f"shift {label}={value}: DELTA {value!r} is not a number."
            ) from None
        if not math.isfinite(delta) or abs(delta) > MAX_SHIFT:
            raise ChoiceQueryError(
                f"shift {label}={value}: DELTA == {delta}, must be finite and within "
                f"[-{MAX_SHIFT:g}, {MAX_SHIFT:g}]."
            )
        shifts[label] = delta
    prices: dict[str, str | float] = {}
    for label, value in _pairs(price, "price", "ACTION=COLUMN or ACTION=AMOUNT"):
        if label not in actions:
            raise ChoiceQueryError(f"price: action {label!r} is not among {actions}.")
        if label in prices:
            raise ChoiceQueryError(f"price: action {label!r} is given twice.")
        if value in results.state_cols:
            prices[label] = value
            continue
        try:
            amount = float(value)
        except ValueError:
            raise ChoiceQueryError(
                f"price {label}={value}: {value!r} is neither a state column "
                f"({results.state_cols}) nor a number."
            ) from None
        if not math.isfinite(amount):
            raise ChoiceQueryError(f"price {label}={value}: amount must be finite.")
        prices[label] = amount
    if not 1 <= months <= MAX_MONTHS:
        raise ChoiceQueryError(f"months == {months}, must be in [1, {MAX_MONTHS}].")
    if not 1 <= members <= MAX_MEMBERS:
        raise ChoiceQueryError(f"members == {members}, must be in [1, {MAX_MEMBERS}].")
    return ChoiceQuery(
        shift=tuple(sorted(shifts.items())),
        prices=tuple(sorted(prices.items())),
        months=months,
        members=members,
        seed=seed,
    )


def _num(v: Any) -> float | None:
    x = float(v)
    return x if math.isfinite(x) else None


class ChoiceHolder:
    """One loaded choice model and a small LRU cache of counterfactuals."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.results = ChoiceResults.load(self.directory)
        self._lock = threading.Lock()  # one simulation at a time per process
        self._cache: OrderedDict[ChoiceQuery, dict[str, Any]] = OrderedDict()

    def model(self) -> dict[str, Any]:
        r = self.results
        return {
            "directory": str(self.directory),
            "estimator": r.estimator,
            "actions": [str(a) for a in r.actions],
            "anchor": str(r.anchor),
            "discount": float(r.discount),
            "state_cols": list(r.state_cols),
            "n_states": int(r.n_states),
            "converged": bool(r.converged),
            "limits": {"months": MAX_MONTHS, "members": MAX_MEMBERS, "shift": MAX_SHIFT},
        }

    def counterfactual(self, q: ChoiceQuery) -> dict[str, Any]:
        """The counterfactual of ``q`` as JSON-ready rows (cached)."""
        with self._lock:
            hit = self._cache.get(q)
            if hit is not None:
                self._cache.move_to_end(q)
                return {**hit, "cached": True}
            t0 = time.perf_counter()
            cf = counterfactual(
                self.results,
                dict(q.shift),
                months=q.months,
                n_members=q.members,
                prices=dict(q.prices) or None,
                alpha=1 - LEVEL,
                rng=q.seed,
            )
            has_prices = bool(q.prices)
            shares = [
                {
                    "month": int(r["month"]),
                    "action": str(r["action"]),
                    **{
                        k: _num(r[k])
                        for k in (
                            "baseline",
                            "baseline_lower",
                            "baseline_upper",
                            "counterfactual",
                            "counterfactual_lower",
                            "counterfactual_upper",
                            "difference",
                            "difference_lower",
                            "difference_upper",
                        )
                    },
                }
                for r in cf.shares.to_dict("records")
            ]
            metrics = [
                {
                    "month": int(r["month"]),
                    "scenario": str(r["scenario"]),
                    "churn": _num(r["churn"]),
                    **{
                        k: _num(r[k]) if has_prices else None
                        for k in ("revenue", "revenue_lower", "revenue_upper")
                    },
                }
                for r in cf.metrics.to_dict("records")
            ]
            out = {
                "shift": dict(q.shift),
                "prices": dict(q.prices),
                "months": q.months,
                "members": q.members,
                "seed": q.seed,
                "level": LEVEL,
                "actions": [str(a) for a in self.results.actions],
                "shares": shares,
                "metrics": metrics,
                "seconds": round(time.perf_counter() - t0, 4),
            }
            self._cache[q] = out
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return {**out, "cached": False}
