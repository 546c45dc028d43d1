"""Counterfactuals, benefit valuation and bootstrap over members.

A counterfactual changes rewards (a price change through the price coefficient, a
benefit worth so much to whom), re-solves the model and moves members forward month by
month: plan shares, revenue and churn, baseline against counterfactual.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator, spawn
from memberlab._typing import FloatArray, IntArray
from memberlab.choice._bootstrap import bootstrap_replicates, reward_intervals
from memberlab.choice._defaults import DEFAULT_ALPHA, DEFAULT_MEMBERS, DEFAULT_MONTHS
from memberlab.choice._dynamics import _propagate, propagate_shares, simulate_path
from memberlab.choice._panel import Panel
from memberlab.choice._results import ChoiceResults

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MEMBERS",
    "DEFAULT_MONTHS",
    "DEFAULT_N_BOOT",
    "Changes",
    "CounterfactualResult",
    "PriceChange",
    "bootstrap",
    "counterfactual",
    "parse_changes",
    "price_coefficient",
    "price_elasticities",
    "price_matrix",
    "price_shift",
    "propagate_shares",
    "reward_intervals",
    "reward_shift",
    "value_benefits",
]

logger = logging.getLogger(__name__)

DEFAULT_N_BOOT = 200

ShiftSpec = Mapping[Any, float | FloatArray] | FloatArray
PriceSpec = Mapping[Any, str | float]


def reward_shift(results: ChoiceResults, shift: ShiftSpec) -> FloatArray:
    """Turn ``{action: delta}`` (delta a float or an array over states) into (S, A).

    Raises
    ------
    DataValidationError
        For an unknown action, a delta of the wrong shape or a non-finite delta.
    """
    n_s, n_a = results.rewards.shape
    if isinstance(shift, np.ndarray):
        arr = np.asarray(shift, dtype=float)
        if arr.shape != (n_s, n_a):
            raise DataValidationError(f"reward shift has shape {arr.shape}, must be {(n_s, n_a)}.")
        out = arr
    else:
        out = np.zeros((n_s, n_a))
        for label, delta in shift.items():
            a = results.action_index(label)
            d = np.asarray(delta, dtype=float)
            if d.ndim > 1 or (d.ndim == 1 and d.shape != (n_s,)):
                raise DataValidationError(
                    f"reward shift of {label!r} has shape {d.shape}, must be a number or "
                    f"({n_s},) (one value per state)."
                )
            out[:, a] = np.broadcast_to(d, (n_s,))
    if not np.isfinite(out).all():
        raise DataValidationError("reward shift holds non-finite values; deltas must be finite.")
    return np.where(results.feasible, out, 0.0)


def price_coefficient(
    results: ChoiceResults,
    *,
    action: Any,
    price: str,
    features: Sequence[str] | None = None,
) -> float:
    """Reward per unit of price for ``action`` (negative when a higher price deters).

    The fitted parameter ``"<action>:<price>"`` when the model has one (CCP and NFXP with
    :func:`~memberlab.choice.linear_features`); otherwise the price coefficient of
    :func:`value_benefits` (estimated rewards regressed on the other state columns, or on
    ``features``, and the price).

    Raises
    ------
    DataValidationError
        If ``price`` is not a numeric state column of the model.
    """
    if price not in results.state_cols:
        raise DataValidationError(
            f"price column {price!r} is not a state column of the fitted model "
            f"{results.state_cols}; a price change needs the price as a state column."
        )
    if not pd.api.types.is_numeric_dtype(results.states[price]):
        raise DataValidationError(f"price column {price!r} is not numeric.")
    label = str(results.actions[results.action_index(action)])
    name = f"{label}:{price}"
    if name in results.param_names:
        return float(results.params[results.param_names.index(name)])
    if features is None:
        features = _identified_features(results, action, price)
    val = value_benefits(results, action=action, features=list(features), price=price)
    return float(val.loc[val["term"] == price, "coef"].iloc[0])


def _identified_features(results: ChoiceResults, action: Any, price: str) -> list[str]:
    """State columns other than ``price`` that keep the valuation design of full rank.

    A column collinear with the price and the columns before it (another price that is a
    multiple of this one, a tier that fixes the price) would split the price
    coefficient; it is left out, with a log message.
    """
    a = results.action_index(action)
    a0 = results.action_index(results.anchor)
    use = results.feasible[:, a] & results.feasible[:, a0] & (results.counts.sum(axis=1) > 0)
    states = results.states.loc[use]
    p = states[price].to_numpy(dtype=float)
    tss = float(((p - p.mean()) ** 2).sum())
    kept: list[str] = []
    for c in results.state_cols:
        if c == price:
            continue
        x, _ = _design(states, [*kept, c], price)
        x = x[:, :-1]  # without the price column itself
        fit = x @ np.linalg.lstsq(x, p, rcond=None)[0]
        r2 = 1.0 - float(((p - fit) ** 2).sum()) / tss if tss > 0 else 1.0
        if r2 < 0.99:
            kept.append(c)
        else:
            warnings.warn(
                f"price coefficient of {price!r}: state column {c!r} is left out of the "
                f"valuation regression, it explains the price almost entirely (R^2 = {r2:.3f}); "
                "its effect and the price's cannot be told apart.",
                stacklevel=3,
            )
    return kept


@dataclass(frozen=True)
class PriceChange:
    """A price change: what members pay for ``action`` (state column ``price``) times ``factor``.

    Utility moves through ``price_coef`` (reward per unit of price): the reward shift is
    ``price_coef * (factor - 1) * price(s)`` on ``action``. Passed to
    :func:`counterfactual`, revenue in the counterfactual is computed at the new price.
    Made by :func:`price_shift`.
    """

    action: Any
    price: str
    factor: float
    price_coef: float

    def reward_shift(self, results: ChoiceResults) -> FloatArray:
        """The reward shift on ``results``' states, shape (n_states, n_actions)."""
        p = results.states[self.price].to_numpy(dtype=float)
        return reward_shift(results, {self.action: self.price_coef * (self.factor - 1.0) * p})

    def __repr__(self) -> str:
        return (
            f"PriceChange(action={self.action!r}, price={self.price!r}, factor={self.factor:g}, "
            f"price_coef={self.price_coef:.4g})"
        )


def _check_factor(action: Any, factor: Any) -> float:
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise DataValidationError(
            f"price change of {action!r}: factor {factor!r} is not a number."
        ) from None
    if not math.isfinite(f) or f <= 0:
        raise DataValidationError(
            f"price change of {action!r}: factor == {f}, must be finite and > 0."
        )
    return f


def price_shift(
    results: ChoiceResults,
    *,
    action: Any,
    price: str,
    factor: float,
    price_coef: float | None = None,
) -> PriceChange:
    """A price change of ``action``: its price (state column ``price``) times ``factor``.

    Parameters
    ----------
    results : ChoiceResults
    action : action label
    price : str
        State column holding what a member pays for ``action``.
    factor : float
        Multiplier of the price (1.2: a 20% rise).
    price_coef : float, optional
        Reward per unit of price; by default :func:`price_coefficient`.

    Returns
    -------
    PriceChange
        Give it to :func:`counterfactual` as the shift (revenue at the new price), or
        take its :meth:`PriceChange.reward_shift` to re-solve by hand.
    """
    results.action_index(action)
    f = _check_factor(action, factor)
    if price_coef is None:
        price_coef = price_coefficient(results, action=action, price=price)
    elif price not in results.state_cols:
        raise DataValidationError(
            f"price column {price!r} is not a state column of the fitted model "
            f"{results.state_cols}; a price change needs the price as a state column."
        )
    if not math.isfinite(float(price_coef)):
        raise DataValidationError(f"price_coef == {price_coef}, must be finite.")
    return PriceChange(action=action, price=price, factor=f, price_coef=float(price_coef))


def price_matrix(results: ChoiceResults, prices: PriceSpec | None) -> FloatArray:
    """What a member pays per (state, action), shape (n_states, n_actions).

    ``prices`` is ``{action: state column or amount}``, as for :func:`counterfactual`;
    actions not named pay 0, and so does every state without a choice (locked-in months
    are paid at sign-up).

    Raises
    ------
    DataValidationError
        For an unknown action, a column that is not a numeric state column of the model,
        or a non-finite amount.
    """
    n_s, n_a = results.rewards.shape
    price = np.zeros((n_s, n_a))
    for label, spec in (prices or {}).items():
        a = results.action_index(label)
        if isinstance(spec, str):
            if spec not in results.state_cols:
                raise DataValidationError(
                    f"price of {label!r}: column {spec!r} is not a state column of the fitted "
                    f"model {results.state_cols}; give a state column or an amount."
                )
            if not pd.api.types.is_numeric_dtype(results.states[spec]):
                raise DataValidationError(f"price of {label!r}: column {spec!r} is not numeric.")
            price[:, a] = results.states[spec].to_numpy(dtype=float)
        else:
            amount = float(spec)
            if not math.isfinite(amount):
                raise DataValidationError(f"price of {label!r} == {amount}, must be finite.")
            price[:, a] = amount
    choice_states = results.feasible.sum(axis=1) > 1
    return np.where(choice_states[:, None], price, 0.0)


def _on_plan(results: ChoiceResults, anchor: int) -> FloatArray:
    """Probability that a member in each state got there by a non-anchor action.

    From the observed decisions and the transition model: inflow into ``s'`` by action
    ``a`` is ``sum_s counts[s, a] P[a, s, s']``. A state no one is seen to enter counts
    as off plan. (On the membership environment, where the state holds the plan, it is
    exactly 0 or 1.)
    """
    inflow = np.einsum("sa,ast->at", results.counts, results.transitions)
    tot = inflow.sum(axis=0)
    on = tot - inflow[anchor]
    return np.where(tot > 0, on / np.where(tot > 0, tot, 1.0), 0.0)


@dataclass(frozen=True)
class Changes:
    """A parsed counterfactual query: reward shifts, prices and price changes.

    ``shift`` maps actions to reward deltas, ``prices`` actions to a state column or an
    amount, ``price_change`` actions to price factors (the arguments of
    :func:`counterfactual` of the same names).
    """

    shift: dict[str, float]
    prices: dict[str, str | float]
    price_change: dict[str, float]


def _pairs(items: Sequence[str], name: str, example: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        label, sep, value = str(item).partition("=")
        if not sep or not label.strip() or not value.strip():
            raise DataValidationError(f"{name} {item!r} must look like {example}.")
        out.append((label.strip(), value.strip()))
    return out


def parse_changes(
    results: ChoiceResults,
    *,
    shift: Sequence[str] = (),
    price: Sequence[str] = (),
    price_change: Sequence[str] = (),
    names: tuple[str, str, str] = ("--reward-shift", "--price", "--price-change"),
    max_shift: float = math.inf,
) -> Changes:
    """Parse ``ACTION=VALUE`` strings against a fitted model (the CLI's and the service's
    counterfactual queries).

    ``shift`` items are ``ACTION=DELTA`` (added to the action's reward in every state);
    ``price`` items ``ACTION=STATE_COLUMN`` or ``ACTION=AMOUNT``; ``price_change`` items
    ``ACTION=FACTOR`` (the action's price column times FACTOR). ``names`` are the
    option names used in messages.

    Raises
    ------
    DataValidationError
        In one line: a malformed item, an unknown action, an action given twice, an
        empty, non-numeric or non-finite value, a delta beyond ``max_shift``, a price
        that is neither a state column nor a number, a factor that is not positive.
    """
    actions = [str(a) for a in results.actions]
    n_shift, n_price, n_change = names

    def known(name: str, label: str, seen: Mapping[str, Any]) -> None:
        if label not in actions:
            raise DataValidationError(f"{name}: action {label!r} is not among {actions}.")
        if label in seen:
            raise DataValidationError(f"{name}: action {label!r} is given twice.")

    shifts: dict[str, float] = {}
    for label, value in _pairs(shift, n_shift, "ACTION=DELTA (e.g. monthly=-0.3)"):
        known(n_shift, label, shifts)
        try:
            delta = float(value)
        except ValueError:
            raise DataValidationError(
                f"{n_shift} {label}={value}: DELTA {value!r} is not a number."
            ) from None
        if not math.isfinite(delta) or abs(delta) > max_shift:
            bound = "" if math.isinf(max_shift) else f" and within [-{max_shift:g}, {max_shift:g}]"
            raise DataValidationError(
                f"{n_shift} {label}={value}: DELTA == {delta}, must be finite{bound}."
            )
        shifts[label] = delta
    prices: dict[str, str | float] = {}
    for label, value in _pairs(price, n_price, "ACTION=COLUMN or ACTION=AMOUNT"):
        known(n_price, label, prices)
        if value in results.state_cols:
            prices[label] = value
            continue
        try:
            amount = float(value)
        except ValueError:
            raise DataValidationError(
                f"{n_price} {label}={value}: {value!r} is neither a state column "
                f"({results.state_cols}) nor a number."
            ) from None
        if not math.isfinite(amount):
            raise DataValidationError(f"{n_price} {label}={value}: amount must be finite.")
        prices[label] = amount
    changes: dict[str, float] = {}
    for label, value in _pairs(price_change, n_change, "ACTION=FACTOR (e.g. monthly=1.2)"):
        known(n_change, label, changes)
        try:
            factor = float(value)
        except ValueError:
            raise DataValidationError(
                f"{n_change} {label}={value}: FACTOR {value!r} is not a number."
            ) from None
        if not math.isfinite(factor) or factor <= 0:
            raise DataValidationError(
                f"{n_change} {label}={value}: FACTOR == {factor}, must be finite and > 0."
            )
        spec = prices.get(label)
        if spec is None or not isinstance(spec, str):
            got = "no price" if spec is None else f"the fixed amount {spec!r}"
            raise DataValidationError(
                f"{n_change} {label}={value} needs the price of {label!r} as a state column "
                f"of the fitted model ({n_price} {label}=COLUMN, one of {results.state_cols}); "
                f"got {got}."
            )
        changes[label] = factor
    return Changes(shift=shifts, prices=prices, price_change=changes)


def _resolve_changes(
    results: ChoiceResults,
    shift: ShiftSpec | PriceChange | None,
    price_change: Mapping[Any, float] | None,
    prices: PriceSpec | None,
    price_coef: Mapping[Any, float] | None,
) -> tuple[ShiftSpec | None, list[PriceChange], dict[Any, str | float]]:
    """Split the query into a reward shift and price changes; complete ``prices``."""
    changes: list[PriceChange] = []
    reward: ShiftSpec | None = None
    if isinstance(shift, PriceChange):
        changes.append(shift)
    elif shift is not None:
        reward = shift
    out_prices: dict[Any, str | float] = dict(prices or {})
    labels = {str(k): k for k in out_prices}
    coefs = {str(k): v for k, v in (price_coef or {}).items()}
    for label, factor in (price_change or {}).items():
        results.action_index(label)
        spec = out_prices.get(labels.get(str(label), label))
        if spec is None:
            raise DataValidationError(
                f"price change of {label!r} needs its price: give prices[{label!r}] (--price "
                f"{label}=COLUMN), a state column of the fitted model {results.state_cols}."
            )
        if not isinstance(spec, str):
            raise DataValidationError(
                f"price change of {label!r} needs its price as a state column of the fitted "
                f"model {results.state_cols}, got the fixed amount {spec!r}: the price "
                "coefficient is estimated from prices that vary across states."
            )
        changes.append(
            price_shift(
                results, action=label, price=spec, factor=factor, price_coef=coefs.get(str(label))
            )
        )
    seen: set[str] = set()
    for ch in changes:
        key = str(results.actions[results.action_index(ch.action)])
        if key in seen:
            raise DataValidationError(f"price change of {ch.action!r} is given twice.")
        seen.add(key)
        if key in labels:
            spec = out_prices[labels[key]]
            if spec != ch.price:
                raise DataValidationError(
                    f"price change of {ch.action!r} is on column {ch.price!r} but its price "
                    f"is given as {spec!r}."
                )
        else:
            out_prices[ch.action] = ch.price
            labels[key] = ch.action
    return reward, changes, out_prices


@dataclass(frozen=True)
class CounterfactualResult:
    """Baseline against counterfactual, month by month (month 0 is the first month).

    Attributes
    ----------
    shares : DataFrame
        ``month, action, baseline, counterfactual, difference`` with ``*_lower`` and
        ``*_upper`` interval columns.
    metrics : DataFrame
        ``month, scenario (baseline|counterfactual), revenue, churn`` per member with
        ``*_lower``/``*_upper`` intervals. Revenue is what members pay (counterfactual at
        the new prices); churn is the share of members on a plan who leave (in month 0,
        members who start on a plan).
    info : dict
        The query: ``prices``, ``price_changes`` (action, column, factor, price
        coefficient), ``members``, ``months``, ``level``, ``intervals``.
    """

    shares: pd.DataFrame
    metrics: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def share_at(self, month: int, action: Any, scenario: str = "counterfactual") -> float:
        row = self.shares[(self.shares["month"] == month) & (self.shares["action"] == action)]
        return float(row[scenario].iloc[0])

    def months_frame(self) -> pd.DataFrame:
        """One row per month: churn and revenue of both scenarios with intervals."""
        parts = []
        for scen in ("baseline", "counterfactual"):
            g = self.metrics[self.metrics["scenario"] == scen].set_index("month")
            cols = {}
            for k in ("churn", "revenue"):
                for suf in ("", "_lower", "_upper"):
                    cols[f"{k}_{scen}{suf}"] = g[f"{k}{suf}"]
            parts.append(pd.DataFrame(cols))
        out = pd.concat(parts, axis=1).reset_index()
        order = ["month"]
        for k in ("churn", "revenue"):
            for scen in ("baseline", "counterfactual"):
                order += [f"{k}_{scen}", f"{k}_{scen}_lower", f"{k}_{scen}_upper"]
        return out[order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"shares": [...], "months": [...], "query": {...}}``.

        ``shares`` rows: ``month, action, baseline, baseline_lower, baseline_upper,
        counterfactual, counterfactual_lower, counterfactual_upper, difference,
        difference_lower, difference_upper``; ``months`` rows: ``month`` and
        ``churn_*``/``revenue_*`` of both scenarios with intervals (revenue ``None``
        when no prices were given). Non-finite numbers become ``None``.
        """
        share_keys = [
            "baseline",
            "baseline_lower",
            "baseline_upper",
            "counterfactual",
            "counterfactual_lower",
            "counterfactual_upper",
            "difference",
            "difference_lower",
            "difference_upper",
        ]
        shares = [
            {
                "month": int(r["month"]),
                "action": str(r["action"]),
                **{k: _num(r[k]) for k in share_keys},
            }
            for r in self.shares.to_dict("records")
        ]
        has_prices = bool(self.info.get("prices"))
        months = []
        for r in self.months_frame().to_dict("records"):
            row: dict[str, Any] = {"month": int(r["month"])}
            for k, v in r.items():
                key = str(k)
                if key == "month":
                    continue
                row[key] = None if (key.startswith("revenue") and not has_prices) else _num(v)
            months.append(row)
        return {"shares": shares, "months": months, "query": _jsonable_info(self.info)}

    def __repr__(self) -> str:
        n_m = int(self.shares["month"].max()) + 1 if len(self.shares) else 0
        acts = list(pd.unique(self.shares["action"])) if len(self.shares) else []
        changes = ", ".join(
            f"{c['action']} x{c['factor']:g}" for c in self.info.get("price_changes", [])
        )
        return (
            f"<CounterfactualResult: {n_m} months, actions {acts}, "
            f"{self.info.get('members', '?')} simulated members"
            f"{', price changes ' + changes if changes else ''}>"
        )

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Save a PNG of the plan shares (baseline dashed, counterfactual solid)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for i, (act, g) in enumerate(self.shares.groupby("action", sort=False)):
            color = f"C{i}"
            ax[0].plot(g["month"], g["baseline"], "--", color=color, label=f"{act} (baseline)")
            ax[0].plot(g["month"], g["counterfactual"], "-", color=color, label=f"{act}")
            if "counterfactual_lower" in g:
                ax[0].fill_between(
                    g["month"],
                    g["counterfactual_lower"],
                    g["counterfactual_upper"],
                    color=color,
                    alpha=0.2,
                )
        ax[0].set_xlabel("month")
        ax[0].set_ylabel("share of members")
        ax[0].legend(fontsize=7)
        for scen, g in self.metrics.groupby("scenario", sort=False):
            ax[1].plot(
                g["month"], g["revenue"], "-" if scen == "counterfactual" else "--", label=str(scen)
            )
        ax[1].set_xlabel("month")
        ax[1].set_ylabel("revenue per member")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, format="png", dpi=100)
        plt.close(fig)
        return out


def _num(v: Any) -> float | None:
    x = float(v)
    return x if math.isfinite(x) else None


def _jsonable_info(info: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return {str(k): conv(v) for k, v in info.items()}


def counterfactual(
    results: ChoiceResults,
    shift: ShiftSpec | PriceChange | None = None,
    *,
    price_change: Mapping[Any, float] | None = None,
    prices: PriceSpec | None = None,
    price_coef: Mapping[Any, float] | None = None,
    months: int = DEFAULT_MONTHS,
    n_members: int = DEFAULT_MEMBERS,
    replicates: Sequence[ChoiceResults] = (),
    n_boot: int = DEFAULT_N_BOOT,
    alpha: float = DEFAULT_ALPHA,
    initial: IntArray | None = None,
    rng: RNGLike = None,
) -> CounterfactualResult:
    """Re-solve under changed rewards or prices and simulate members forward.

    Parameters
    ----------
    results : ChoiceResults
        Fitted model with a transition model.
    shift : mapping, ndarray of shape (n_states, n_actions) or PriceChange, optional
        A reward change: ``{action: delta}`` (delta a float or an array over states) or a
        full array; or a :class:`PriceChange` from :func:`price_shift`.
    price_change : mapping, optional
        ``{action: factor}``: the action's price times ``factor``. Utility moves through
        the price coefficient (``price_coef`` or :func:`price_coefficient`), revenue is
        computed at the new price. The action's price must be a state column in
        ``prices``.
    prices : mapping, optional
        ``{action: state column or amount}``: what a member pays when choosing the action
        in a state with a choice (locked-in months are paid at sign-up). Without prices
        revenue is 0 (and ``None`` in :meth:`CounterfactualResult.to_dict`).
    price_coef : mapping, optional
        ``{action: reward per unit of price}`` for ``price_change``.
    months : int, default 12
    n_members : int, default 10,000
        Simulated members, drawn from the panel's first-period states.
    replicates : sequence of ChoiceResults
        Bootstrap refits; if given, intervals cover estimation uncertainty (exact
        propagation per replicate), else simulation noise over members.
    n_boot : int, default 200
        Bootstrap draws over simulated members when ``replicates`` is empty.
    alpha : float, default 0.05
        Intervals at level ``1 - alpha``.
    initial : ndarray of int, optional
        First-period states to draw members from (default ``results.first_states``).
    rng : int, Generator or None

    Returns
    -------
    CounterfactualResult
    """
    if months < 1:
        raise ValueError(f"months == {months}, must be >= 1.")
    if n_members < 1:
        raise ValueError(f"n_members == {n_members}, must be >= 1.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha == {alpha}, must be in (0, 1).")
    if n_boot < 1:
        raise ValueError(f"n_boot == {n_boot}, must be >= 1.")
    if results.transitions.shape[1] != results.n_states:
        raise DataValidationError(
            "results has no transition model on its states; fit with a discrete panel."
        )
    reward, changes, all_prices = _resolve_changes(results, shift, price_change, prices, price_coef)
    g = as_generator(rng)

    def deltas(res: ChoiceResults, re_estimate: bool) -> FloatArray:
        d = np.zeros_like(res.rewards) if reward is None else reward_shift(res, reward)
        for ch in changes:
            c = ch
            if re_estimate and str(ch.action) not in {str(k) for k in (price_coef or {})}:
                c = price_shift(res, action=ch.action, price=ch.price, factor=ch.factor)
            d = d + c.reward_shift(res)
        return d

    price_b = price_matrix(results, all_prices)
    price_c = price_b.copy()
    for ch in changes:
        price_c[:, results.action_index(ch.action)] *= ch.factor
    base = results.solve()
    cf = results.solve(results.rewards + deltas(results, False))
    first = results.first_states if initial is None else np.asarray(initial, dtype=np.int64)
    if len(first) == 0:
        raise DataValidationError("no first-period states to simulate from.")
    start = first[g.integers(0, len(first), size=n_members)]
    g_sim, g_boot = spawn(g, 2)
    # common random numbers: the same draws under both scenarios
    seed = int(g_sim.integers(2**63 - 1))
    s_b, a_b = simulate_path(
        base.policy, results.transitions, start, months, np.random.default_rng(seed)
    )
    s_c, a_c = simulate_path(
        cf.policy, results.transitions, start, months, np.random.default_rng(seed)
    )
    n_s, n_a = results.rewards.shape
    a0 = results.action_index(results.anchor)
    on0 = _on_plan(results, a0)
    scen = {}
    for name, s_, a_, price in (
        ("baseline", s_b, a_b, price_b),
        ("counterfactual", s_c, a_c, price_c),
    ):
        onehot = np.eye(n_a)[a_]  # (n, months, A)
        pay = price[s_, a_]
        on = np.concatenate([on0[s_[:, :1]], (a_[:, :-1] != a0).astype(float)], axis=1)
        left = on * (a_ == a0)
        scen[name] = (onehot, pay, on, left)
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)
    point: dict[str, dict[str, FloatArray]] = {}
    boot: dict[str, dict[str, FloatArray]] = {}
    for name, (onehot, pay, on, left) in scen.items():
        point[name] = {
            "shares": onehot.mean(axis=0),
            "revenue": pay.mean(axis=0),
            "churn": left.sum(axis=0) / np.maximum(on.sum(axis=0), 1e-300),
        }
    if replicates:
        init = np.bincount(first, minlength=n_s).astype(float)
        for name in scen:
            boot[name] = {"shares": [], "revenue": [], "churn": []}  # type: ignore[dict-item]
        for rep in replicates:
            pb = rep.solve().policy
            pc = rep.solve(rep.rewards + deltas(rep, True)).policy
            on_r = _on_plan(rep, a0)
            for name, pol, price in (("baseline", pb, price_b), ("counterfactual", pc, price_c)):
                joint, churn = _propagate(
                    pol, rep.transitions, init, months, anchor=a0, on_plan=on_r
                )
                boot[name]["shares"].append(joint.sum(axis=1))  # type: ignore[attr-defined]
                boot[name]["revenue"].append((joint * price).sum(axis=(1, 2)))  # type: ignore[attr-defined]
                boot[name]["churn"].append(churn)  # type: ignore[attr-defined]
        for name in boot:
            boot[name] = {k: np.array(v) for k, v in boot[name].items()}
        intervals = "bootstrap replicates"
    else:
        draws = g_boot.multinomial(n_members, np.full(n_members, 1.0 / n_members), size=n_boot)
        wb = draws.astype(float) / n_members
        for name, (onehot, pay, on, left) in scen.items():
            won = wb @ on
            boot[name] = {
                "shares": np.einsum("bn,nta->bta", wb, onehot),
                "revenue": wb @ pay,
                "churn": (wb @ left) / np.maximum(won, 1e-300),
            }
        intervals = "simulated members"
    ci = {
        name: {k: np.percentile(v, [lo_q, hi_q], axis=0) for k, v in b.items()}
        for name, b in boot.items()
    }
    diff = np.percentile(
        boot["counterfactual"]["shares"] - boot["baseline"]["shares"], [lo_q, hi_q], axis=0
    )
    rows = []
    sb, sc = point["baseline"]["shares"], point["counterfactual"]["shares"]
    for t in range(months):
        for a in range(n_a):
            rows.append(
                {
                    "month": t,
                    "action": results.actions[a],
                    "baseline": sb[t, a],
                    "counterfactual": sc[t, a],
                    "difference": sc[t, a] - sb[t, a],
                    "baseline_lower": ci["baseline"]["shares"][0][t, a],
                    "baseline_upper": ci["baseline"]["shares"][1][t, a],
                    "counterfactual_lower": ci["counterfactual"]["shares"][0][t, a],
                    "counterfactual_upper": ci["counterfactual"]["shares"][1][t, a],
                    "difference_lower": diff[0][t, a],
                    "difference_upper": diff[1][t, a],
                }
            )
    met = []
    for name in ("baseline", "counterfactual"):
        for t in range(months):
            met.append(
                {
                    "month": t,
                    "scenario": name,
                    "revenue": point[name]["revenue"][t],
                    "revenue_lower": ci[name]["revenue"][0][t],
                    "revenue_upper": ci[name]["revenue"][1][t],
                    "churn": point[name]["churn"][t],
                    "churn_lower": ci[name]["churn"][0][t],
                    "churn_upper": ci[name]["churn"][1][t],
                }
            )
    info = {
        "months": months,
        "members": n_members,
        "level": 1 - alpha,
        "intervals": intervals,
        "prices": {str(k): v for k, v in all_prices.items()},
        "price_changes": [
            {
                "action": str(c.action),
                "price": c.price,
                "factor": c.factor,
                "price_coef": c.price_coef,
            }
            for c in changes
        ],
        # members on a plan by month (churn's denominator), so shards combine exactly
        "on_plan": {name: scen[name][2].sum(axis=0).tolist() for name in scen},
        # per-member standard deviation of revenue by month (ddof=1), for pooled intervals
        "revenue_sd": {
            name: scen[name][1].std(axis=0, ddof=1 if n_members > 1 else 0).tolist()
            for name in scen
        },
    }
    return CounterfactualResult(pd.DataFrame(rows), pd.DataFrame(met), info)


def price_elasticities(
    results: ChoiceResults,
    *,
    action: Any,
    price: str,
    price_coef: float | None = None,
    months: int = DEFAULT_MONTHS,
    step: float = 0.01,
) -> pd.DataFrame:
    """Elasticities of plan shares to the price of ``action``, month by month.

    ``d log share(b) / d log price(action)`` by central differences (price times
    ``1 +- step``), from exact share propagation of the re-solved model from the panel's
    first-period states; utility moves through the price coefficient
    (:func:`price_coefficient` unless given).

    Returns
    -------
    DataFrame
        ``month, action, share, elasticity``: one row per month and action.
    """
    if not 0 < step < 0.5:
        raise ValueError(f"step == {step}, must be in (0, 0.5).")
    if months < 1:
        raise ValueError(f"months == {months}, must be >= 1.")
    if price_coef is None:
        price_coef = price_coefficient(results, action=action, price=price)
    init = np.bincount(results.first_states, minlength=results.n_states).astype(float)
    out = {}
    for f in (1.0, 1.0 + step, 1.0 - step):
        ch = price_shift(results, action=action, price=price, factor=f, price_coef=price_coef)
        pol = results.solve(results.rewards + ch.reward_shift(results)).policy
        out[f] = propagate_shares(pol, results.transitions, init, months)
    with np.errstate(divide="ignore", invalid="ignore"):
        el = (np.log(out[1.0 + step]) - np.log(out[1.0 - step])) / (
            np.log(1.0 + step) - np.log(1.0 - step)
        )
    rows = [
        {
            "month": t,
            "action": results.actions[b],
            "share": out[1.0][t, b],
            "elasticity": el[t, b],
        }
        for t in range(months)
        for b in range(results.rewards.shape[1])
    ]
    return pd.DataFrame(rows)


def bootstrap(
    fit: Callable[[Panel], ChoiceResults],
    panel: Panel,
    *,
    n_boot: int = 50,
    rng: RNGLike = None,
) -> list[ChoiceResults]:
    """Refit on panels resampled over members (ids drawn with replacement).

    Parameters
    ----------
    fit : callable
        ``panel -> ChoiceResults``, e.g. ``TabularPQR(...).fit``.
    panel : Panel
    n_boot : int
    rng : int, Generator or None
        Child generators are spawned per replicate.

    To run the replicates on local processes or Ray, see
    :func:`memberlab.choice.bootstrap_replicates` (this is its serial form).
    """
    return bootstrap_replicates(fit, panel, n_boot=n_boot, rng=rng)


def _design(
    states: pd.DataFrame, features: Sequence[str], price: str
) -> tuple[FloatArray, list[str]]:
    cols: list[FloatArray] = [np.ones(len(states))]
    names = ["const"]
    for c in [*features, price]:
        if c not in states.columns:
            raise DataValidationError(
                f"column {c!r} not among the state columns {list(states.columns)}."
            )
        col = states[c]
        if pd.api.types.is_numeric_dtype(col):
            cols.append(col.to_numpy(dtype=float))
            names.append(c)
        else:
            d = pd.get_dummies(col.astype(str), drop_first=True)
            for lev in d.columns:
                cols.append(d[lev].to_numpy(dtype=float))
                names.append(f"{c}={lev}")
    return np.column_stack(cols), names


def _wls(x: FloatArray, y: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)
    resid = y - x @ coef
    dof = max(len(y) - x.shape[1], 1)
    sigma2 = float((w * resid**2).sum() / w.sum() * len(y) / dof)
    xtwx = (x * w[:, None]).T @ x / w.sum() * len(y)
    cov = np.asarray(sigma2 * np.linalg.pinv(xtwx), dtype=float)
    return np.asarray(coef, dtype=float), cov


def value_benefits(
    results: ChoiceResults,
    *,
    action: Any,
    features: Sequence[str],
    price: str,
    segment: str | None = None,
    replicates: Sequence[ChoiceResults] = (),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each benefit's contribution to a plan's value, in reward units and in money.

    Regress the estimated reward difference ``r(s, action) - r(s, anchor)`` over the
    states where both are feasible (weights: observed decisions) on an intercept, the
    benefit ``features`` and the ``price``; willingness to pay for a feature is
    ``coef / -price_coef``. Per ``segment`` value if given.

    Intervals: percentiles over bootstrap ``replicates`` if given, else normal intervals
    from weighted least squares (delta method for willingness to pay).

    Returns
    -------
    DataFrame
        ``segment, term, coef, coef_lower, coef_upper, mean_level, contribution, wtp,
        wtp_lower, wtp_upper`` (``wtp`` of a feature is its money value per unit;
        ``contribution`` is ``coef * mean_level`` in reward units).
    """
    a = results.action_index(action)
    a0 = results.action_index(results.anchor)
    use = results.feasible[:, a] & results.feasible[:, a0] & (results.counts.sum(axis=1) > 0)
    segs: list[tuple[Any, np.ndarray]] = [("all", use)]
    if segment is not None:
        if segment not in results.states.columns:
            raise DataValidationError(f"segment column {segment!r} not among {results.state_cols}.")
        segs = [
            (v, use & (results.states[segment] == v).to_numpy())
            for v in pd.unique(results.states.loc[use, segment])
        ]
    x_all, names = _design(results.states, features, price)
    k_price = len(names) - 1
    z = float(special.ndtri(1 - alpha / 2))  # the normal quantile (scipy.stats is slow to import)
    rows = []
    for seg, m in segs:
        if m.sum() < len(names):
            logger.warning("segment %r has %d states, too few to value benefits", seg, m.sum())
            continue
        w = results.counts[m].sum(axis=1)
        x = x_all[m]

        def coefs(
            res: ChoiceResults, m: np.ndarray = m, x: FloatArray = x, w: FloatArray = w
        ) -> tuple[FloatArray, FloatArray]:
            y = res.rewards[m, a] - res.rewards[m, a0]
            return _wls(x, y, w)

        coef, cov = coefs(results)
        pc = coef[k_price]
        wtp = coef / -pc
        if replicates:
            bc = np.array([coefs(r)[0] for r in replicates])
            bw = bc / -bc[:, [k_price]]
            c_lo, c_hi = np.percentile(bc, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
            w_lo, w_hi = np.percentile(bw, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        else:
            se = np.sqrt(np.abs(np.diag(cov)))
            c_lo, c_hi = coef - z * se, coef + z * se
            # delta method: d(wtp_j) = -(1/pc) dc_j + (c_j / pc^2) dpc
            se_w = np.empty(len(coef))
            for j in range(len(coef)):
                gvec = np.zeros(len(coef))
                gvec[j] += -1.0 / pc
                gvec[k_price] += coef[j] / pc**2
                var_j = float(gvec @ cov @ gvec)
                se_w[j] = float(np.sqrt(max(var_j, 0.0)))
            w_lo, w_hi = wtp - z * se_w, wtp + z * se_w
        level = np.average(x, axis=0, weights=w)
        # willingness to pay for the price itself would be -1 by construction: not reported
        wtp[k_price] = w_lo[k_price] = w_hi[k_price] = np.nan
        for j, name in enumerate(names):
            rows.append(
                {
                    "segment": seg,
                    "term": name,
                    "coef": coef[j],
                    "coef_lower": c_lo[j],
                    "coef_upper": c_hi[j],
                    "mean_level": level[j],
                    "contribution": coef[j] * level[j],
                    "wtp": wtp[j],
                    "wtp_lower": w_lo[j],
                    "wtp_upper": w_hi[j],
                }
            )
    return pd.DataFrame(rows)
