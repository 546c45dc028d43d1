"""Member-value simulation for many simulated members, sharded by member.

Each shard runs :func:`memberlab.value.member_values` with ``method="simulate"`` on its
own members (its own child seed); the shards' revenues per state and plan are averaged
weighted by members, which is the estimate over all members. Shards are fixed by
``n_members`` and ``shard_size`` alone, so the numbers do not depend on the executor or
the number of workers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from memberlab._rng import RNGLike
from memberlab.jobs._counterfactual import member_shards

if TYPE_CHECKING:
    from memberlab.choice import ChoiceResults
    from memberlab.jobs._executor import Executor, Progress
    from memberlab.value import MemberValues

__all__ = ["simulate_member_values"]


def _shard(shared: tuple[Any, dict[str, Any]], task: tuple[int, np.random.SeedSequence]) -> Any:
    from memberlab.value import member_values

    results, kwargs = shared
    n, seed = task
    return n, member_values(
        results, method="simulate", n_members=n, rng=np.random.default_rng(seed), **kwargs
    )


def simulate_member_values(
    results: ChoiceResults,
    *,
    prices: Any,
    n_members: int = 100_000,
    shard_size: int = 10_000,
    rng: RNGLike = None,
    executor: Executor | str | None = None,
    progress: Progress | None = None,
    **kwargs: Any,
) -> MemberValues:
    """Member values by seeded simulation of ``n_members`` members per state and plan.

    Parameters
    ----------
    results : ChoiceResults
    prices : mapping
        As in :func:`memberlab.value.member_values`.
    n_members : int
        Simulated members per (state, plan) in total.
    shard_size : int
        Members per task.
    rng : int, SeedSequence, Generator or None
        Seed of the job; shard ``k`` uses its ``k``-th spawned child.
    executor : Executor, {"serial", "processes", "ray"} or None
    progress : callable, optional
    **kwargs
        Passed to :func:`memberlab.value.member_values` (``horizon``, ``discount``,
        ``shift``, ``step``); bootstrap ``replicates`` are not sharded (no intervals).

    Returns
    -------
    MemberValues
        ``method="simulate"``, ``info["shards"]`` the number of shards.
    """
    from memberlab._errors import DataValidationError
    from memberlab.jobs._executor import Executor, get_executor, task_seeds

    if kwargs.get("replicates"):
        raise DataValidationError(
            "replicates are not sharded: run memberlab.value.member_values for intervals."
        )
    sizes = member_shards(n_members, shard_size)
    tasks = list(zip(sizes, task_seeds(rng, len(sizes)), strict=True))
    shared = (results, {"prices": prices, **kwargs})
    ex = get_executor(executor)
    if isinstance(executor, Executor):
        parts = ex.map(_shard, tasks, shared=shared, desc="member value", progress=progress)
    else:
        with ex:
            parts = ex.map(_shard, tasks, shared=shared, desc="member value", progress=progress)
    n = np.array([p[0] for p in parts], dtype=float)
    w = n / n.sum()
    values = np.einsum("k,ksa->sa", w, np.array([p[1].values for p in parts]))
    revenue = np.einsum("k,ksa->sa", w, np.array([p[1].revenue for p in parts]))
    first = parts[0][1]
    return replace(
        first,
        values=values,
        revenue=revenue,
        lower=None,
        upper=None,
        info={**first.info, "shards": len(parts), "n_members": int(n_members)},
    )
