"""Member values of a model directory written by ``memberlab choice fit``.

What the service computes at start-up (``memberlab serve --objective value``) and what
``memberlab evaluate logs --reward value`` turns logged conversions into: the member value
of each plan per state, with prices parsed as ``choice counterfactual`` parses them and
bootstrap intervals from the replicates ``choice fit --bootstrap B`` wrote, when present.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from memberlab._errors import DataValidationError
from memberlab.choice import ChoiceResults, parse_changes
from memberlab.choice._bootstrap import BOOTSTRAP_DIR, load_bootstrap
from memberlab.value._member import MemberValues, member_values

__all__ = ["load_replicates", "value_prices", "values_from_model"]

log = logging.getLogger(__name__)


def value_prices(results: ChoiceResults, items: Sequence[str]) -> dict[str, str | float]:
    """``{plan: state column or amount}`` from ``ACTION=COLUMN|AMOUNT`` items, parsed by
    :func:`memberlab.choice.parse_changes` (as ``choice counterfactual`` does). Without
    items, every non-anchor action with a state column ``price_<action>`` pays it.

    Raises
    ------
    DataValidationError
        A malformed item, or no item and no ``price_<action>`` column (member values
        would all be 0).
    """
    prices = dict(parse_changes(results, price=list(items)).prices)
    if prices:
        return prices
    plans = [str(a) for a in results.actions if a != results.anchor]
    prices = {p: f"price_{p}" for p in plans if f"price_{p}" in results.state_cols}
    if not prices:
        raise DataValidationError(
            "member value needs prices: give --price ACTION=COLUMN|AMOUNT for the plans "
            f"{plans} (no state column price_<plan> to default to; state columns "
            f"{results.state_cols})."
        )
    return prices


def load_replicates(directory: str | os.PathLike[str]) -> list[ChoiceResults]:
    """The bootstrap replicates ``choice fit --bootstrap B`` wrote to ``directory`` (an
    empty list when it wrote none)."""
    if not (Path(directory) / BOOTSTRAP_DIR / "bootstrap.json").is_file():
        return []
    return list(load_bootstrap(directory).replicates)


@functools.lru_cache(maxsize=8)
def _cached(directory: str, horizon: int, prices: tuple[str, ...]) -> MemberValues:
    results = ChoiceResults.load(directory)
    spec = value_prices(results, prices)
    values = member_values(
        results, prices=spec, horizon=horizon, replicates=load_replicates(directory)
    )
    log.info(
        "member values of %d states x %d plans from %s (horizon %d, prices %s)",
        len(values.states),
        len(values.plans),
        directory,
        horizon,
        spec,
    )
    return values


def values_from_model(
    directory: str | os.PathLike[str], *, horizon: int = 24, prices: Sequence[str] = ()
) -> MemberValues:
    """Member values (exact, with bootstrap intervals when the directory holds
    replicates) of a model directory written by ``memberlab choice fit``; computed once
    per process for the same arguments.

    Parameters
    ----------
    directory : path
    horizon : int, default 24
        Months of revenue.
    prices : sequence of str
        ``ACTION=COLUMN|AMOUNT`` items (see :func:`value_prices`).
    """
    return _cached(str(Path(directory).resolve()), int(horizon), tuple(prices))
