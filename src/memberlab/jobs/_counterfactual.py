"""Counterfactual simulation for many members, sharded by member.

Each shard simulates ``shard_size`` members with :func:`memberlab.choice.counterfactual`
(its own child seed), and the shards' month-by-month plan shares, revenue and churn are
combined exactly (weighted by members; revenue variances pooled; churn from the leavers
and the members on a plan). Shards are fixed by ``n_members`` and ``shard_size`` alone,
so the numbers do not depend on the executor or the number of workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike

if TYPE_CHECKING:
    from memberlab.choice import ChoiceResults, CounterfactualResult
    from memberlab.jobs._executor import Executor, Progress

__all__ = ["member_shards", "simulate_counterfactual"]


def member_shards(n_members: int, shard_size: int) -> list[int]:
    """Sizes of the member shards: ``shard_size`` each, the last one the remainder."""
    if isinstance(n_members, bool) or int(n_members) != n_members or n_members < 1:
        raise DataValidationError(f"n_members == {n_members!r}, must be an integer >= 1.")
    if isinstance(shard_size, bool) or int(shard_size) != shard_size or shard_size < 1:
        raise DataValidationError(f"shard_size == {shard_size!r}, must be an integer >= 1.")
    full, rest = divmod(int(n_members), int(shard_size))
    return [int(shard_size)] * full + ([rest] if rest else [])


def _shard(
    shared: tuple[ChoiceResults, Any, dict[str, Any]], task: tuple[int, np.random.SeedSequence]
) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    from memberlab.choice import counterfactual

    results, shift, kwargs = shared
    n, seed = task
    cf = counterfactual(
        results, shift, n_members=n, n_boot=1, rng=np.random.default_rng(seed), **kwargs
    )
    keep = ["month", "action", "baseline", "counterfactual"]
    met = cf.metrics[["month", "scenario", "revenue", "churn"]].copy()
    for key in ("on_plan", "revenue_sd"):
        met[key] = np.concatenate([cf.info[key]["baseline"], cf.info[key]["counterfactual"]])
    return n, cf.shares[keep], met


def simulate_counterfactual(
    results: ChoiceResults,
    shift: Any,
    *,
    n_members: int = 100_000,
    months: int = 12,
    shard_size: int = 10_000,
    prices: Mapping[Any, str | float] | None = None,
    alpha: float = 0.05,
    rng: RNGLike = None,
    executor: Executor | str | None = None,
    progress: Progress | None = None,
) -> CounterfactualResult:
    """Baseline against counterfactual for ``n_members`` simulated members, by shards.

    Parameters
    ----------
    results : ChoiceResults
    shift : mapping or ndarray
        As in :func:`memberlab.choice.counterfactual`.
    n_members : int
        Members simulated in total.
    months : int
    shard_size : int
        Members per task (fixes the split; memory per task is about
        ``shard_size * months`` draws).
    prices : mapping, optional
        As in :func:`memberlab.choice.counterfactual`.
    alpha : float
        Intervals at level ``1 - alpha``: for a share ``p`` the normal interval with
        ``sqrt(p (1 - p) / n_members)`` (member indicators); for a difference in shares
        the between-shard standard error (needs two shards or more, else NaN); revenue
        from the pooled member-level variance.
    rng : int, SeedSequence, Generator or None
        Seed of the job; shard ``k`` uses its ``k``-th spawned child.
    executor : Executor, {"serial", "processes", "ray"} or None
    progress : callable, optional

    Returns
    -------
    CounterfactualResult
        Same columns as :func:`memberlab.choice.counterfactual`'s.
    """
    from memberlab.jobs._executor import Executor, get_executor, task_seeds

    if not 0 < alpha < 1:
        raise DataValidationError(f"alpha == {alpha}, must be in (0, 1).")
    sizes = member_shards(n_members, shard_size)
    tasks = list(zip(sizes, task_seeds(rng, len(sizes)), strict=True))
    shared = (results, shift, {"months": months, "prices": prices})
    ex = get_executor(executor)
    if isinstance(executor, Executor):
        parts = ex.map(_shard, tasks, shared=shared, desc="counterfactual", progress=progress)
    else:
        with ex:
            parts = ex.map(_shard, tasks, shared=shared, desc="counterfactual", progress=progress)
    return _combine(parts, results, alpha)


def _combine(
    parts: list[tuple[int, pd.DataFrame, pd.DataFrame]], results: ChoiceResults, alpha: float
) -> CounterfactualResult:
    from memberlab.choice import CounterfactualResult

    z = float(special.ndtri(1 - alpha / 2))
    n = np.array([p[0] for p in parts], dtype=float)
    total = float(n.sum())
    frac = n / total
    shares0 = parts[0][1]
    base = np.array([p[1]["baseline"].to_numpy() for p in parts])  # (K, rows)
    cfac = np.array([p[1]["counterfactual"].to_numpy() for p in parts])
    sb = frac @ base
    sc = frac @ cfac
    diff_k = cfac - base
    sd = sc - sb
    k = len(parts)
    if k > 1:
        # between-shard variance of the difference, weighted by shard size
        var_d = (n @ (diff_k - sd) ** 2) / (k - 1) / total
        se_d = np.sqrt(var_d)
    else:
        se_d = np.full(sd.shape, np.nan)
    se_b = np.sqrt(np.clip(sb * (1 - sb), 0, None) / total)
    se_c = np.sqrt(np.clip(sc * (1 - sc), 0, None) / total)
    shares = shares0[["month", "action"]].copy().reset_index(drop=True)
    shares["baseline"] = sb
    shares["counterfactual"] = sc
    shares["difference"] = sd
    shares["baseline_lower"] = sb - z * se_b
    shares["baseline_upper"] = sb + z * se_b
    shares["counterfactual_lower"] = sc - z * se_c
    shares["counterfactual_upper"] = sc + z * se_c
    shares["difference_lower"] = sd - z * se_d
    shares["difference_upper"] = sd + z * se_d

    rows = []
    met0 = parts[0][2]
    for scen in ("baseline", "counterfactual"):
        m_rows = (met0["scenario"] == scen).to_numpy()
        months = met0.loc[m_rows, "month"].to_numpy()
        rev = np.array([p[2].loc[m_rows, "revenue"].to_numpy() for p in parts])  # (K, T)
        rev_sd = np.array([p[2].loc[m_rows, "revenue_sd"].to_numpy() for p in parts])
        churn = np.array([p[2].loc[m_rows, "churn"].to_numpy() for p in parts])
        on = np.array([p[2].loc[m_rows, "on_plan"].to_numpy() for p in parts])  # (K, T)
        mean = frac @ rev
        # pooled variance: within-shard sums of squares plus between-shard spread
        s2 = rev_sd**2  # per-member variance (ddof=1) of each shard
        ss = ((n[:, None] - 1) * s2).sum(axis=0) + (n[:, None] * (rev - mean) ** 2).sum(axis=0)
        se = np.sqrt(ss / max(total - 1, 1.0) / total)
        # churn = leavers / members on a plan, both summed over shards
        left = churn * on
        ch = left.sum(axis=0) / np.maximum(on.sum(axis=0), 1e-300)
        for t in range(len(months)):
            rows.append(
                {
                    "month": int(months[t]),
                    "scenario": scen,
                    "revenue": mean[t],
                    "revenue_lower": mean[t] - z * se[t],
                    "revenue_upper": mean[t] + z * se[t],
                    "churn": ch[t],
                }
            )
    return CounterfactualResult(shares, pd.DataFrame(rows))
