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
from typing import TYPE_CHECKING, Any

from memberlab._errors import ChoiceQueryError, DataValidationError
from memberlab.choice import DEFAULT_ALPHA
from memberlab.choice import DEFAULT_MEMBERS as _DEFAULT_MEMBERS
from memberlab.choice import DEFAULT_MONTHS as _DEFAULT_MONTHS

if TYPE_CHECKING:
    from memberlab.choice import ChoiceResults

__all__ = [
    "DEFAULT_MEMBERS",
    "DEFAULT_MONTHS",
    "LEVEL",
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
#: the library's defaults, so the service, the CLI and :func:`counterfactual` agree
DEFAULT_MONTHS = _DEFAULT_MONTHS
DEFAULT_MEMBERS = _DEFAULT_MEMBERS
LEVEL = 1 - DEFAULT_ALPHA
_CACHE_SIZE = 128


@dataclass(frozen=True, slots=True)
class ChoiceQuery:
    """A normalised counterfactual query (hashable: the cache key)."""

    shift: tuple[tuple[str, float], ...]
    prices: tuple[tuple[str, str | float], ...]
    months: int
    members: int
    seed: int
    price_change: tuple[tuple[str, float], ...] = ()


def parse_query(
    results: ChoiceResults,
    *,
    shift: Sequence[str],
    price: Sequence[str],
    months: int,
    members: int,
    seed: int,
    price_change: Sequence[str] = (),
) -> ChoiceQuery:
    """Check a query against the model: known actions, finite bounded deltas, prices.

    ``shift`` items are ``ACTION=DELTA`` (DELTA is added to the action's reward in every
    state); ``price`` items are ``ACTION=STATE_COLUMN`` or ``ACTION=AMOUNT``;
    ``price_change`` items ``ACTION=FACTOR`` (the action's price column times FACTOR).
    Parsed by :func:`memberlab.choice.parse_changes`, as on the command line.
    """
    try:
        from memberlab.choice import parse_changes  # loaded with the first query

        ch = parse_changes(
            results,
            shift=shift,
            price=price,
            price_change=price_change,
            names=("shift", "price", "price_change"),
            max_shift=MAX_SHIFT,
        )
    except DataValidationError as exc:
        raise ChoiceQueryError(str(exc)) from None
    if not 1 <= months <= MAX_MONTHS:
        raise ChoiceQueryError(f"months == {months}, must be in [1, {MAX_MONTHS}].")
    if not 1 <= members <= MAX_MEMBERS:
        raise ChoiceQueryError(f"members == {members}, must be in [1, {MAX_MEMBERS}].")
    return ChoiceQuery(
        shift=tuple(sorted(ch.shift.items())),
        prices=tuple(sorted(ch.prices.items())),
        months=months,
        members=members,
        seed=seed,
        price_change=tuple(sorted(ch.price_change.items())),
    )


def _num(v: Any) -> float | None:
    x = float(v)
    return x if math.isfinite(x) else None


class ChoiceHolder:
    """One loaded choice model and a small LRU cache of counterfactuals."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        from memberlab.choice import ChoiceResults  # loaded only with --choice-model

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
            "defaults": {"months": DEFAULT_MONTHS, "members": DEFAULT_MEMBERS, "level": LEVEL},
        }

    def counterfactual(self, q: ChoiceQuery) -> dict[str, Any]:
        """The counterfactual of ``q`` as JSON-ready rows (cached)."""
        with self._lock:
            hit = self._cache.get(q)
            if hit is not None:
                self._cache.move_to_end(q)
                return {**hit, "cached": True}
            t0 = time.perf_counter()
            from memberlab.choice import counterfactual

            cf = counterfactual(
                self.results,
                dict(q.shift),
                months=q.months,
                n_members=q.members,
                prices=dict(q.prices) or None,
                price_change=dict(q.price_change) or None,
                alpha=DEFAULT_ALPHA,
                rng=q.seed,
            )
            has_prices = bool(q.prices)
            rows = cf.to_dict()
            metrics = [
                {
                    "month": int(r["month"]),
                    "scenario": str(r["scenario"]),
                    **{k: _num(r[k]) for k in ("churn", "churn_lower", "churn_upper")},
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
                "price_change": dict(q.price_change),
                "price_changes": rows["query"]["price_changes"],
                "months": q.months,
                "members": q.members,
                "seed": q.seed,
                "level": LEVEL,
                "actions": [str(a) for a in self.results.actions],
                "shares": rows["shares"],
                "by_month": rows["months"],
                "metrics": metrics,
                "seconds": round(time.perf_counter() - t0, 4),
            }
            self._cache[q] = out
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return {**out, "cached": False}
