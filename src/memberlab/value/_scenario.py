"""Benefit portfolio decisions: rank candidate reward and price changes against a baseline.

A scenario is what ``memberlab choice counterfactual`` takes: reward shifts (a new
benefit worth so much to members on a plan) and price changes (a factor on a plan's
price, moving both the utility, through the price coefficient, and the revenue, at the
new price). Every scenario is simulated with the same members and the same random
numbers as the baseline (common random numbers), so differences carry little noise, and
scenarios are ranked by revenue per member and by retention with intervals against the
baseline.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator, spawn
from memberlab._typing import FloatArray, IntArray
from memberlab.choice._counterfactual import price_coefficient, price_matrix, reward_shift
from memberlab.choice._env import simulate_path
from memberlab.choice._results import ChoiceResults
from memberlab.value._member import PriceSpec

__all__ = ["Scenario", "ScenarioComparison", "compare_scenarios"]

logger = logging.getLogger(__name__)

_Z = 1.959963984540054


def _pairs(flag: str, items: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        label, sep, value = item.partition("=")
        label = label.strip()
        if not sep or not label:
            raise DataValidationError(f"{flag} {item!r} must look like ACTION=NUMBER.")
        if label in out:
            raise DataValidationError(f"{flag} names action {label!r} twice.")
        try:
            num = float(value)
        except ValueError:
            raise DataValidationError(f"{flag} {item!r}: {value!r} is not a number.") from None
        if not np.isfinite(num):
            raise DataValidationError(f"{flag} {item!r}: {value!r} is not finite.")
        out[label] = num
    return out


@dataclass(frozen=True)
class Scenario:
    """A candidate change: reward shifts and price factors per action.

    Parameters
    ----------
    reward_shift : mapping of action to float
        Added to the action's reward in every state where it is feasible.
    price_change : mapping of action to float
        Multiplies the action's price (> 0); the action's price must be a state column.
    """

    reward_shift: Mapping[str, float] = field(default_factory=dict)
    price_change: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        """Read the options of ``choice counterfactual``.

        ``"--reward-shift monthly=0.3 --price-change annual=0.9"``; each option may
        repeat with different actions.

        Raises
        ------
        DataValidationError
            On an unknown option, a malformed pair, a repeated action or an empty spec.
        """
        tokens = shlex.split(spec)
        shifts: list[str] = []
        changes: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            key, eq, inline = tok.partition("=") if tok.startswith("--") else (tok, "", "")
            if key not in ("--reward-shift", "--price-change"):
                raise DataValidationError(
                    f"scenario spec {spec!r}: {tok!r} is not --reward-shift ACTION=DELTA or "
                    "--price-change ACTION=FACTOR."
                )
            if eq:
                val = inline
            else:
                if i + 1 >= len(tokens):
                    raise DataValidationError(f"scenario spec {spec!r}: {key} needs a value.")
                i += 1
                val = tokens[i]
            (shifts if key == "--reward-shift" else changes).append(val)
            i += 1
        if not shifts and not changes:
            raise DataValidationError(f"scenario spec {spec!r} changes nothing.")
        price = _pairs("--price-change", changes)
        for label, f in price.items():
            if f <= 0:
                raise DataValidationError(
                    f"--price-change {label}={f}: FACTOR must be > 0 (1.2 is a 20% rise)."
                )
        return cls(_pairs("--reward-shift", shifts), price)

    def describe(self) -> str:
        parts = [f"--reward-shift {a}={d:g}" for a, d in self.reward_shift.items()]
        parts += [f"--price-change {a}={f:g}" for a, f in self.price_change.items()]
        return " ".join(parts)


@dataclass(frozen=True)
class ScenarioComparison:
    """Scenarios against the baseline.

    Attributes
    ----------
    table : DataFrame
        One row per scenario (baseline first): ``scenario, spec, revenue,
        revenue_diff, revenue_diff_lower, revenue_diff_upper, retention,
        retention_diff, retention_diff_lower, retention_diff_upper, members_end,
        rank_revenue, rank_retention``. Revenue is per simulated member over the months;
        retention is the share of members on a plan in the first month who are on a plan
        in the last; ``members_end`` the share of all members on a plan in the last month.
    months : DataFrame
        ``scenario, month, revenue, members`` per member and month.
    months_simulated, n_members : int
    alpha : float
    """

    table: pd.DataFrame
    months: pd.DataFrame
    months_simulated: int
    n_members: int
    alpha: float
    info: dict[str, Any] = field(default_factory=dict)

    def ranking(self, by: str = "revenue") -> list[str]:
        """Scenario names best first by ``"revenue"`` or ``"retention"``."""
        if by not in ("revenue", "retention"):
            raise ValueError(f"by == {by!r}, must be 'revenue' or 'retention'.")
        t = self.table[self.table["scenario"] != "baseline"]
        return [str(s) for s in t.sort_values(f"rank_{by}")["scenario"]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"months", "members", "alpha", "scenarios": [...], "monthly": [...]}``."""

        def clean(v: Any) -> Any:
            if isinstance(v, np.integer):
                return int(v)
            if isinstance(v, float | np.floating):
                return float(v) if np.isfinite(v) else None
            return v

        return {
            "months": self.months_simulated,
            "members": self.n_members,
            "alpha": self.alpha,
            "scenarios": [
                {k: clean(v) for k, v in r.items()} for r in self.table.to_dict("records")
            ],
            "monthly": [
                {k: clean(v) for k, v in r.items()} for r in self.months.to_dict("records")
            ],
        }

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """PNG: revenue and retention difference to the baseline per scenario, with intervals."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = self.table[self.table["scenario"] != "baseline"]
        colour = {name: f"C{i}" for i, name in enumerate(t["scenario"])}
        colour["baseline"] = "k"
        fig, ax = plt.subplots(1, 3, figsize=(14, 4))
        for k, (col, label) in enumerate(
            (("revenue", "revenue per member"), ("retention", "retention (share)"))
        ):
            tt = t.sort_values(f"{col}_diff")
            y = np.arange(len(tt))
            d = tt[f"{col}_diff"].to_numpy()
            err = np.vstack([d - tt[f"{col}_diff_lower"], tt[f"{col}_diff_upper"] - d])
            ax[k].barh(y, d, xerr=err, color=[colour[n] for n in tt["scenario"]], capsize=3)
            ax[k].set_yticks(y, list(tt["scenario"]))
            ax[k].axvline(0, color="k", lw=0.8)
            ax[k].set_xlabel(f"{label}: scenario - baseline")
        for scen, g in self.months.groupby("scenario", sort=False):
            style = "--" if scen == "baseline" else "-"
            ax[2].plot(g["month"], g["members"], style, color=colour[scen], label=str(scen))
        ax[2].set_xlabel("month")
        ax[2].set_ylabel("share of members on a plan")
        ax[2].legend(fontsize=7)
        lvl = round(100 * (1 - self.alpha))
        fig.suptitle(
            f"{self.n_members:,} members, {self.months_simulated} months, {lvl}% intervals"
        )
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, format="png", dpi=100)
        plt.close(fig)
        return out


def _scenario_arrays(
    results: ChoiceResults, scenario: Scenario, prices: PriceSpec, base_price: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(reward shift, prices) of a scenario, each (n_states, n_actions)."""
    delta = reward_shift(results, dict(scenario.reward_shift)) if scenario.reward_shift else 0.0
    price = base_price.copy()
    spec = {str(k): v for k, v in prices.items()}
    extra = np.zeros_like(base_price)
    for label, factor in scenario.price_change.items():
        a = results.action_index(label)
        col = spec.get(str(results.actions[a]))
        if not isinstance(col, str):
            raise DataValidationError(
                f"--price-change {label}={factor:g}: the price of {label!r} must be a state "
                f"column of the fitted model (--price {label}=COLUMN), got {col!r}; state "
                f"columns: {results.state_cols}."
            )
        coef = price_coefficient(results, action=label, price=col)
        extra[:, a] = coef * (factor - 1.0) * base_price[:, a]
        price[:, a] = base_price[:, a] * factor
    shift = np.where(results.feasible, delta + extra, 0.0)
    return shift, price


def _simulate(
    results: ChoiceResults,
    shift: FloatArray,
    price: FloatArray,
    start: IntArray,
    months: int,
    seed: int,
) -> tuple[FloatArray, FloatArray]:
    """Per member and month: revenue and on-a-plan indicator, each (n_members, months)."""
    policy = results.solve(results.rewards + shift).policy
    s, a = simulate_path(policy, results.transitions, start, months, np.random.default_rng(seed))
    choice = results.feasible.sum(axis=1) > 1
    a0 = results.action_index(results.anchor)
    return price[s, a] * choice[s], (a != a0).astype(float)


def compare_scenarios(
    results: ChoiceResults,
    scenarios: Mapping[str, Scenario | str],
    *,
    prices: PriceSpec,
    months: int = 12,
    n_members: int = 10_000,
    replicates: Sequence[ChoiceResults] = (),
    n_boot: int = 200,
    alpha: float = 0.05,
    rng: RNGLike = None,
) -> ScenarioComparison:
    """Simulate every scenario and the baseline with the same members; rank them.

    Parameters
    ----------
    results : ChoiceResults
        Fitted model with a transition model.
    scenarios : mapping of name to Scenario or spec string
        Spec strings as :meth:`Scenario.parse` reads them.
    prices : mapping
        ``{action: state column or amount}``, as for counterfactuals.
    months : int, default 12
    n_members : int, default 10,000
        Members drawn from the panel's first-period states.
    replicates : sequence of ChoiceResults
        Bootstrap refits; if given, intervals are percentiles of the differences over
        them (the same members and random numbers in each), else a bootstrap over
        members (``n_boot`` draws) of the paired differences.
    alpha : float, default 0.05
    rng : int, Generator or None

    Returns
    -------
    ScenarioComparison
    """
    if months < 1:
        raise ValueError(f"months == {months}, must be >= 1.")
    if n_members < 2:
        raise ValueError(f"n_members == {n_members}, must be >= 2.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha == {alpha}, must be in (0, 1).")
    if n_boot < 1:
        raise ValueError(f"n_boot == {n_boot}, must be >= 1.")
    if not scenarios:
        raise ValueError("scenarios is empty; give at least one NAME=SPEC.")
    if "baseline" in scenarios:
        raise DataValidationError("scenario name 'baseline' is reserved for the fitted model.")
    if results.transitions.shape[1:] != (results.n_states, results.n_states):
        raise DataValidationError(
            "results has no transition model on its states; fit with a discrete panel."
        )
    parsed = {
        str(k): (Scenario.parse(v) if isinstance(v, str) else v) for k, v in scenarios.items()
    }
    for sc in parsed.values():
        for label in [*sc.reward_shift, *sc.price_change]:
            results.action_index(label)
    g = as_generator(rng)
    g_start, g_sim, g_boot = spawn(g, 3)
    first = results.first_states
    if len(first) == 0:
        raise DataValidationError("no first-period states to simulate from.")
    start = first[g_start.integers(0, len(first), size=n_members)]
    seed = int(g_sim.integers(2**63 - 1))
    names = ["baseline", *parsed]

    def run(res: ChoiceResults) -> dict[str, tuple[FloatArray, FloatArray]]:
        base_price = price_matrix(res, prices)
        out = {
            "baseline": _simulate(res, np.zeros_like(res.rewards), base_price, start, months, seed)
        }
        for name, sc in parsed.items():
            shift, price = _scenario_arrays(res, sc, prices, base_price)
            out[name] = _simulate(res, shift, price, start, months, seed)
        return out

    sims = run(results)
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)

    def metrics(sim: tuple[FloatArray, FloatArray], w: FloatArray) -> FloatArray:
        """(revenue, retention) per row of member weights ``w`` (n_weights, n_members)."""
        rev, on = sim
        revenue = w @ rev.sum(axis=1) / w.sum(axis=1)
        stay = w @ (on[:, 0] * on[:, -1])
        start_on = w @ on[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            retention = np.where(start_on > 0, stay / start_on, np.nan)
        return np.column_stack([revenue, retention])

    ones = np.ones((1, n_members))
    point = {k: metrics(v, ones)[0] for k, v in sims.items()}
    diffs: dict[str, FloatArray] = {}
    if replicates:
        reps = [run(rep) for rep in replicates]
        for k in names:
            diffs[k] = np.array(
                [metrics(rs[k], ones)[0] - metrics(rs["baseline"], ones)[0] for rs in reps]
            )
    else:
        draws = g_boot.multinomial(n_members, np.full(n_members, 1.0 / n_members), size=n_boot)
        w = draws.astype(float)
        base_boot = metrics(sims["baseline"], w)
        for k in names:
            diffs[k] = metrics(sims[k], w) - base_boot
    rows = []
    for k in names:
        r, ret = point[k]
        lo, hi = np.nanpercentile(diffs[k], [lo_q, hi_q], axis=0)
        rows.append(
            {
                "scenario": k,
                "spec": "" if k == "baseline" else parsed[k].describe(),
                "revenue": r,
                "revenue_diff": r - point["baseline"][0],
                "revenue_diff_lower": float(lo[0]),
                "revenue_diff_upper": float(hi[0]),
                "retention": ret,
                "retention_diff": ret - point["baseline"][1],
                "retention_diff_lower": float(lo[1]),
                "retention_diff_upper": float(hi[1]),
                "members_end": float(sims[k][1][:, -1].mean()),
            }
        )
    table = pd.DataFrame(rows)
    for col in ("revenue", "retention"):
        table[f"rank_{col}"] = table[col].rank(ascending=False, method="min").astype(int)
    monthly = pd.DataFrame(
        [
            {
                "scenario": k,
                "month": t,
                "revenue": float(rev[:, t].mean()),
                "members": float(on[:, t].mean()),
            }
            for k, (rev, on) in sims.items()
            for t in range(months)
        ]
    )
    logger.info("compared %d scenarios on %d members", len(parsed), n_members)
    return ScenarioComparison(
        table=table,
        months=monthly,
        months_simulated=months,
        n_members=n_members,
        alpha=alpha,
        info={
            "n_replicates": len(replicates),
            "members_on_plan_at_start": int(sims["baseline"][1][:, 0].sum()),
        },
    )
