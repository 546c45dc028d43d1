"""Off-policy estimates with bootstrap intervals over Parquet logs, sharded by file.

Each task reads one Parquet file and calls :func:`memberlab.evaluation.estimate_all` on
it: once on the file as it is (for the point estimates) and once per bootstrap replicate
on the file with each logged decision repeated ``c_i ~ Poisson(1)`` times (the Poisson
bootstrap, which needs no pass over the other files). A task returns, per estimator,
the value and the number of decisions of each replicate - a few numbers per file.

Shards combine exactly:

- IPS, DM and DR are means of per-decision terms: the pooled value is the
  decision-weighted mean of the shards' values;
- SNIPS is a ratio ``sum w r / sum w``: each shard also returns :func:`ips` of a reward
  of 1 (``sum w / n``), so the pooled value is ``sum_k n_k IPS_k / sum_k n_k IPS1_k``.

So the point estimates equal :func:`estimate_all` on the concatenated logs up to the
order of floating-point additions (relative 1e-12), and every number is the same on
every backend and number of workers (files fix the split; file ``k`` draws its
replicates from the ``k``-th child seed). Intervals are percentiles over the replicates.
Estimators that :func:`estimate_all` adds later and that are not listed here are left
out with a warning, since their combination rule is not known to this job.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike

if TYPE_CHECKING:
    from memberlab.jobs._executor import Executor, Progress

__all__ = ["MEAN_ESTIMATORS", "RATIO_ESTIMATORS", "ope_bootstrap"]

#: Estimators that are means of per-decision terms (combine by decision-weighted mean).
MEAN_ESTIMATORS = ("IPS", "DM", "DR")
#: Self-normalised estimators: ``sum w x / sum w`` (combine through ``sum w``).
RATIO_ESTIMATORS = ("SNIPS",)


def _estimates(frame: pd.DataFrame, cols: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """``{estimator: (value, n)}`` plus ``"_W"``: IPS of a reward of 1 (``sum w / n``)."""
    from memberlab.evaluation import estimate_all, ips

    table = estimate_all(frame, **cols)
    out = {
        str(e): (float(v), float(n))
        for e, v, n in zip(table["estimator"], table["value"], table["n"], strict=True)
    }
    w = ips(
        np.ones(len(frame)),
        frame[cols["logged_propensity"]].to_numpy(dtype=np.float64),
        frame[cols["target_propensity"]].to_numpy(dtype=np.float64),
        clip=cols.get("clip"),
    )
    out["_W"] = (float(w.value), float(w.n))
    return out


def _file_task(
    shared: tuple[dict[str, Any], int, list[str] | None], task: tuple[str, np.random.SeedSequence]
) -> tuple[dict[str, tuple[float, float]], list[dict[str, tuple[float, float]]]]:
    cols, n_boot, columns = shared
    path, seed = task
    frame = pd.read_parquet(path, columns=columns)
    if len(frame) == 0:
        raise DataValidationError(f"{path!r} holds no logged decisions.")
    point = _estimates(frame, cols)
    g = np.random.default_rng(seed)
    reps: list[dict[str, tuple[float, float]]] = []
    for _ in range(n_boot):
        c = g.poisson(1.0, size=len(frame))
        if c.sum() == 0:
            reps.append({})
            continue
        reps.append(_estimates(frame.iloc[np.repeat(np.arange(len(frame)), c)], cols))
    return point, reps


def _pool(shards: Sequence[dict[str, tuple[float, float]]], name: str) -> tuple[float, int]:
    present = [s for s in shards if s]
    n = np.array([s[name][1] for s in present])
    v = np.array([s[name][0] for s in present])
    if name in RATIO_ESTIMATORS:
        w = np.array([s["_W"][0] for s in present])
        num = float(np.dot(n, v * w))
        den = float(np.dot(n, w))
        return (num / den if den > 0 else float("nan")), int(n.sum())
    return float(np.dot(n, v) / n.sum()), int(n.sum())


def ope_bootstrap(
    paths: Sequence[str | os.PathLike[str]],
    *,
    reward: str = "reward",
    logged_propensity: str = "propensity",
    target_propensity: str = "target_propensity",
    logged_reward_hat: str | None = None,
    target_value_hat: str | None = None,
    clip: float | None = None,
    n_boot: int = 200,
    alpha: float = 0.05,
    rng: RNGLike = None,
    executor: Executor | str | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Off-policy value estimates over Parquet log files with Poisson-bootstrap intervals.

    Parameters
    ----------
    paths : sequence of path
        Parquet files (one task each), or directories of ``*.parquet`` files.
    reward, logged_propensity, target_propensity, logged_reward_hat, target_value_hat
        Column names, as in :func:`memberlab.evaluation.estimate_all`.
    clip : float, optional
        Cap on the importance weights.
    n_boot : int
        Bootstrap replicates (>= 1).
    alpha : float
        Intervals at level ``1 - alpha``.
    rng : int, SeedSequence, Generator or None
    executor : Executor, {"serial", "processes", "ray"} or None
    progress : callable, optional

    Returns
    -------
    DataFrame
        One row per estimator: ``estimator, value, lower, upper, boot_sd, n, n_boot,
        n_files``.
    """
    from memberlab.jobs._executor import Executor, get_executor, task_seeds

    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise DataValidationError(f"n_boot == {n_boot!r}, must be an integer >= 1.")
    if not 0 < alpha < 1:
        raise DataValidationError(f"alpha == {alpha}, must be in (0, 1).")
    files = _expand(paths)
    cols: dict[str, Any] = {
        "reward": reward,
        "logged_propensity": logged_propensity,
        "target_propensity": target_propensity,
        "logged_reward_hat": logged_reward_hat,
        "target_value_hat": target_value_hat,
        "clip": clip,
    }
    needed = [c for c in (reward, logged_propensity, target_propensity) if c]
    needed += [c for c in (logged_reward_hat, target_value_hat) if c]
    tasks = list(zip(files, task_seeds(rng, len(files)), strict=True))
    shared = (cols, int(n_boot), needed)
    ex = get_executor(executor)
    if isinstance(executor, Executor):
        parts = ex.map(_file_task, tasks, shared=shared, desc="ope", progress=progress)
    else:
        with ex:
            parts = ex.map(_file_task, tasks, shared=shared, desc="ope", progress=progress)
    names = [k for k in parts[0][0] if k != "_W"]
    unknown = [k for k in names if k not in MEAN_ESTIMATORS + RATIO_ESTIMATORS]
    if unknown:
        warnings.warn(
            f"estimators {unknown} have no known rule to combine shards; left out.",
            UserWarning,
            stacklevel=2,
        )
    rows = []
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)
    for name in names:
        if name in unknown:
            continue
        value, n = _pool([p[0] for p in parts], name)
        boot = np.array([_pool([p[1][b] for p in parts], name)[0] for b in range(n_boot)])
        boot = boot[np.isfinite(boot)]
        lo, hi = np.percentile(boot, [lo_q, hi_q]) if boot.size else (np.nan, np.nan)
        rows.append(
            {
                "estimator": name,
                "value": value,
                "lower": float(lo),
                "upper": float(hi),
                "boot_sd": float(boot.std(ddof=1)) if boot.size > 1 else float("nan"),
                "n": n,
                "n_boot": int(boot.size),
                "n_files": len(files),
            }
        )
    return pd.DataFrame(rows)


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files from files and directories (sorted within a directory), in the given order."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[str] = []
    for p in paths:
        q = Path(p)
        if q.is_dir():
            files.extend(str(f) for f in sorted(q.glob("*.parquet")))
        elif q.is_file():
            files.append(str(q))
        else:
            raise FileNotFoundError(f"no Parquet file or directory at {str(q)!r}.")
    if not files:
        raise DataValidationError(f"paths == {[str(p) for p in paths]!r} hold no .parquet files.")
    return files
