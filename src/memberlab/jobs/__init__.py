"""Offline jobs on one executor interface: serial (default), local processes, or Ray.

Jobs: bootstrap of choice models (:func:`memberlab.choice.bootstrap_replicates`),
counterfactual simulation sharded by member (:func:`simulate_counterfactual`),
empirical-Bayes prior refits over sharded logs (:func:`refit_priors_sharded`),
off-policy estimates with bootstrap intervals over Parquet logs (:func:`ope_bootstrap`)
and batch scoring of a callout catalogue (:func:`score_members`). Each gives the same
numbers whatever the backend and the number of workers.

>>> from memberlab.jobs import get_executor, task_seeds
>>> with get_executor("serial") as ex:
...     ex.map(abs, [-2, 1])
[2, 1]
"""

from memberlab._errors import TaskFailedError
from memberlab.jobs._counterfactual import member_shards, simulate_counterfactual
from memberlab.jobs._executor import (
    BACKENDS,
    Executor,
    ProcessExecutor,
    Progress,
    RayExecutor,
    SerialExecutor,
    get_executor,
    task_seeds,
)
from memberlab.jobs._ope import ope_bootstrap
from memberlab.jobs._refit import ShardedRefit, read_feedback, refit_priors_sharded
from memberlab.jobs._scoring import score_members
from memberlab.jobs._value import simulate_member_values

__all__ = [
    "BACKENDS",
    "Executor",
    "ProcessExecutor",
    "Progress",
    "RayExecutor",
    "SerialExecutor",
    "ShardedRefit",
    "TaskFailedError",
    "get_executor",
    "member_shards",
    "ope_bootstrap",
    "read_feedback",
    "refit_priors_sharded",
    "score_members",
    "simulate_counterfactual",
    "simulate_member_values",
    "task_seeds",
]
