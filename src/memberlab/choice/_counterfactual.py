"""Counterfactuals, benefit valuation and bootstrap over members.

A counterfactual changes rewards (a price change through the price coefficient, a
benefit worth so much to whom), re-solves the model and moves members forward month by
month: plan shares, revenue and churn, baseline against counterfactual.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator, spawn
from memberlab._typing import FloatArray, IntArray
from memberlab.choice._env import simulate_path
from memberlab.choice._panel import Panel
from memberlab.choice._results import ChoiceResults

__all__ = [
    "CounterfactualResult",
    "bootstrap",
    "counterfactual",
    "price_shift",
    "propagate_shares",
    "reward_intervals",
    "reward_shift",
    "value_benefits",
]

logger = logging.getLogger(__name__)

ShiftSpec = Mapping[Any, float | FloatArray] | FloatArray


def propagate_shares(
    policy: FloatArray, transitions: FloatArray, initial: FloatArray, months: int
) -> FloatArray:
    """Exact action shares month by month from an initial state distribution.

    Parameters
    ----------
    policy : ndarray of shape (n_states, n_actions)
    transitions : ndarray of shape (n_actions, n_states, n_states)
    initial : ndarray of shape (n_states,)
        Distribution of members over states in month 0.
    months : int

    Returns
    -------
    ndarray of shape (months, n_actions)
    """
    dist = np.asarray(initial, dtype=float) / float(np.sum(initial))
    out = np.empty((months, policy.shape[1]))
    for t in range(months):
        joint = dist[:, None] * policy  # (S, A)
        out[t] = joint.sum(axis=0)
        dist = np.einsum("sa,ast->t", joint, transitions)
    return out


def reward_shift(results: ChoiceResults, shift: ShiftSpec) -> FloatArray:
    """Turn ``{action: delta}`` (delta a float or an array over states) into (S, A)."""
    n_s, n_a = results.rewards.shape
    if isinstance(shift, np.ndarray):
        arr = np.asarray(shift, dtype=float)
        if arr.shape != (n_s, n_a):
            raise DataValidationError(f"reward shift has shape {arr.shape}, must be {(n_s, n_a)}.")
        return np.where(results.feasible, arr, 0.0)
    out = np.zeros((n_s, n_a))
    for label, delta in shift.items():
        a = results.action_index(label)
        out[:, a] = np.broadcast_to(np.asarray(delta, dtype=float), (n_s,))
    return np.where(results.feasible, out, 0.0)


def price_shift(
    results: ChoiceResults, *, action: Any, price: str, factor: float, price_coef: float
) -> FloatArray:
    """Reward shift of a price change: ``price_coef * (factor - 1) * price(s)`` on ``action``.

    ``price_coef`` is the reward per unit of price (negative), e.g. from
    :func:`value_benefits`.
    """
    if price not in results.states.columns:
        raise DataValidationError(
            f"price column {price!r} not among the state columns {results.state_cols}."
        )
    p = results.states[price].to_numpy(dtype=float)
    return reward_shift(results, {action: price_coef * (factor - 1.0) * p})


@dataclass(frozen=True)
class CounterfactualResult:
    """Baseline against counterfactual, month by month.

    Attributes
    ----------
    shares : DataFrame
        ``month, action, baseline, counterfactual, difference`` and, when available,
        ``*_lower``/``*_upper`` interval columns.
    metrics : DataFrame
        ``month, scenario (baseline|counterfactual), revenue, churn`` per member, with
        intervals when available.
    """

    shares: pd.DataFrame
    metrics: pd.DataFrame

    def share_at(self, month: int, action: Any, scenario: str = "counterfactual") -> float:
        row = self.shares[(self.shares["month"] == month) & (self.shares["action"] == action)]
        return float(row[scenario].iloc[0])

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


def _revenue_churn(
    states: IntArray,
    actions: IntArray,
    price: FloatArray,
    anchor: int,
    choice_states: np.ndarray,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-member revenue and churn indicators, each (n_members, months)."""
    pay = price[states, actions] * choice_states[states]
    prev = np.concatenate([np.full((actions.shape[0], 1), anchor), actions[:, :-1]], axis=1)
    on_plan = prev != anchor
    left = on_plan & (actions == anchor)
    return pay, left.astype(float), on_plan.astype(float), np.ones_like(pay)


def counterfactual(
    results: ChoiceResults,
    shift: ShiftSpec,
    *,
    months: int = 12,
    n_members: int = 10_000,
    prices: Mapping[Any, str | float] | None = None,
    replicates: Sequence[ChoiceResults] = (),
    n_boot: int = 200,
    alpha: float = 0.05,
    initial: IntArray | None = None,
    rng: RNGLike = None,
) -> CounterfactualResult:
    """Re-solve under shifted rewards and simulate members forward.

    Parameters
    ----------
    results : ChoiceResults
        Fitted model with a transition model.
    shift : mapping or ndarray of shape (n_states, n_actions)
        ``{action: delta}`` (delta a float or an array over states), or a full array.
    months : int
    n_members : int
        Simulated members, drawn from the panel's first-period states.
    prices : mapping, optional
        ``{action: state column or constant}``: what a member pays when choosing the
        action in a state with a choice (locked-in months are paid at sign-up).
    replicates : sequence of ChoiceResults
        Bootstrap refits; if given, the intervals cover estimation uncertainty (exact
        share propagation per replicate), else simulation noise over members.
    n_boot : int
        Bootstrap draws over simulated members when ``replicates`` is empty.
    alpha : float
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
    if results.transitions.shape[1] != results.n_states:
        raise DataValidationError(
            "results has no transition model on its states; fit with a discrete panel."
        )
    g = as_generator(rng)
    delta = reward_shift(results, shift)
    base = results.solve()
    cf = results.solve(results.rewards + delta)
    first = results.first_states if initial is None else np.asarray(initial, dtype=np.int64)
    if len(first) == 0:
        raise DataValidationError("no first-period states to simulate from.")
    start = first[g.integers(0, len(first), size=n_members)]
    g_base, g_cf, g_boot = spawn(g, 3)
    # common random numbers: the same draws under both scenarios
    seed = int(g_base.integers(2**63 - 1))
    s_b, a_b = simulate_path(
        base.policy, results.transitions, start, months, np.random.default_rng(seed)
    )
    s_c, a_c = simulate_path(
        cf.policy, results.transitions, start, months, np.random.default_rng(seed)
    )
    del g_cf
    n_s, n_a = results.rewards.shape
    price = np.zeros((n_s, n_a))
    for label, spec in (prices or {}).items():
        a = results.action_index(label)
        if isinstance(spec, str):
            if spec not in results.states.columns:
                raise DataValidationError(f"price column {spec!r} not among {results.state_cols}.")
            price[:, a] = results.states[spec].to_numpy(dtype=float)
        else:
            price[:, a] = float(spec)
    choice_states = results.feasible.sum(axis=1) > 1
    a0 = results.action_index(results.anchor)
    onehot_b = np.eye(n_a)[a_b]  # (n, months, A)
    onehot_c = np.eye(n_a)[a_c]
    rev_b, left_b, on_b, _ = _revenue_churn(s_b, a_b, price, a0, choice_states)
    rev_c, left_c, on_c, _ = _revenue_churn(s_c, a_c, price, a0, choice_states)
    shares_b = onehot_b.mean(axis=0)
    shares_c = onehot_c.mean(axis=0)
    rows = []
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)
    if replicates:
        init = np.bincount(first, minlength=n_s).astype(float)
        rb, rc = [], []
        for rep in replicates:
            pb = rep.solve().policy
            pc = rep.solve(rep.rewards + reward_shift(rep, shift)).policy
            rb.append(propagate_shares(pb, rep.transitions, init, months))
            rc.append(propagate_shares(pc, rep.transitions, init, months))
        boot_b, boot_c = np.array(rb), np.array(rc)
    else:
        draws = g_boot.multinomial(n_members, np.full(n_members, 1.0 / n_members), size=n_boot)
        wb = draws.astype(float) / n_members
        boot_b = np.einsum("bn,nta->bta", wb, onehot_b)
        boot_c = np.einsum("bn,nta->bta", wb, onehot_c)
    lb, ub = np.percentile(boot_b, [lo_q, hi_q], axis=0)
    lc, uc = np.percentile(boot_c, [lo_q, hi_q], axis=0)
    ld, ud = np.percentile(boot_c - boot_b, [lo_q, hi_q], axis=0)
    for t in range(months):
        for a in range(n_a):
            rows.append(
                {
                    "month": t,
                    "action": results.actions[a],
                    "baseline": shares_b[t, a],
                    "counterfactual": shares_c[t, a],
                    "difference": shares_c[t, a] - shares_b[t, a],
                    "baseline_lower": lb[t, a],
                    "baseline_upper": ub[t, a],
                    "counterfactual_lower": lc[t, a],
                    "counterfactual_upper": uc[t, a],
                    "difference_lower": ld[t, a],
                    "difference_upper": ud[t, a],
                }
            )
    met = []
    for scen, rev, left, on in (
        ("baseline", rev_b, left_b, on_b),
        ("counterfactual", rev_c, left_c, on_c),
    ):
        r_mean = rev.mean(axis=0)
        r_se = rev.std(axis=0, ddof=1) / np.sqrt(n_members) if n_members > 1 else 0 * r_mean
        churn = left.sum(axis=0) / np.maximum(on.sum(axis=0), 1.0)
        z = 1.959963984540054
        for t in range(months):
            met.append(
                {
                    "month": t,
                    "scenario": scen,
                    "revenue": r_mean[t],
                    "revenue_lower": r_mean[t] - z * r_se[t],
                    "revenue_upper": r_mean[t] + z * r_se[t],
                    "churn": churn[t],
                }
            )
    return CounterfactualResult(pd.DataFrame(rows), pd.DataFrame(met))


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
    from memberlab.choice._bootstrap import bootstrap_replicates

    return bootstrap_replicates(fit, panel, n_boot=n_boot, rng=rng)


def reward_intervals(
    replicates: Sequence[ChoiceResults], *, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    """Percentile intervals of rewards over bootstrap replicates, each (n_states, n_actions)."""
    if not replicates:
        raise ValueError("replicates is empty, must hold at least one ChoiceResults.")
    arr = np.array([r.rewards for r in replicates])
    lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi


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
    z = float(scipy.stats.norm.ppf(1 - alpha / 2))
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
