"""Empirical-Bayes prior refit of a callout recommender over sharded decision logs.

The same estimator as :meth:`CalloutRecommender.refit_priors` (``source="shadow"``,
deconvolved), split by shard:

1. each shard trains the wide-prior shadow model on its rows (sequential probit ADF from
   ``N(0, shadow_prior_var)``, a wide bias), moves it to its MAP
   (:func:`~memberlab.bayes.metaprior.refine_mean`) and returns its Gaussian likelihood
   messages (:func:`~memberlab.bayes.metaprior.laplace_messages`) keyed by feature
   ``(group, value)``;
2. messages combine exactly by adding natural parameters (precision and
   precision x mean) over shards, in shard order;
3. :func:`~memberlab.bayes.metaprior.fit_group_priors` fits each group's variance from
   the combined messages (group means pinned at 0, the bias excluded, as the
   recommender does);
4. hindsight replay: each shard retrains from the new priors (sequential ADF) and
   returns its messages (:func:`~memberlab.bayes.probit.likelihood_messages`); the
   posterior is the prior times the product of the shards' messages.

With one shard every step is the recommender's own arithmetic on the same rows (same
feature indices), so priors and replayed posterior equal ``refit_priors``'s (posterior
to round-off of the message round trip). With several shards each shard's messages are
taken at its own MAP and its ADF runs over its own rows only, so the result is close to,
not equal to, one pass over the whole log; it is the same on every backend and number
of workers, since shards fix the split and the combination order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memberlab._errors import DataValidationError

if TYPE_CHECKING:
    from memberlab.bayes import GroupPrior
    from memberlab.bayes.groups import FeatureIndex
    from memberlab.bayes.metaprior import MetaPriorFit
    from memberlab.bayes.probit import ProbitState
    from memberlab.callouts import CalloutRecommender, Feedback
    from memberlab.jobs._executor import Executor, Progress

__all__ = ["ShardedRefit", "read_feedback", "refit_priors_sharded"]

Shard = Any  # a sequence of Feedback, or the path of a Parquet file of them
Messages = tuple[list[tuple[str, str]], np.ndarray, np.ndarray]


def read_feedback(path: str | os.PathLike[str]) -> list[Feedback]:
    """Feedback from a Parquet file with columns ``context`` (JSON), ``item_id``, ``reward``."""
    import pandas as pd

    from memberlab.callouts import Feedback

    frame = pd.read_parquet(path, columns=["context", "item_id", "reward"])
    return [
        Feedback(json.loads(c) if isinstance(c, str) else dict(c), str(i), float(r))
        for c, i, r in zip(frame["context"], frame["item_id"], frame["reward"], strict=True)
    ]


def _rows(rec: CalloutRecommender, shard: Shard) -> tuple[Any, np.ndarray]:
    """Feature rows of a shard's feedback in the recommender's feature index."""
    from memberlab.bayes._sparse import SparseRows

    fb = read_feedback(shard) if isinstance(shard, str | os.PathLike) else list(shard)
    idx = [rec.rows(f.context, [f.item_id]).indices for f in fb]
    indptr = np.zeros(len(idx) + 1, dtype=np.int64)
    if idx:
        np.cumsum([len(i) for i in idx], out=indptr[1:])
    indices = np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, dtype=np.int64)
    y = np.array([1 if float(f.reward) > 0 else 0 for f in fb], dtype=np.int64)
    return SparseRows(indptr, indices, np.ones(indices.shape[0])), y


def _keyed(rec: CalloutRecommender, prec: np.ndarray, mean: np.ndarray) -> Messages:
    seen = np.flatnonzero(prec > 0)
    keys = [rec.feature_index.key(int(i)) for i in seen]
    return keys, prec[seen], prec[seen] * mean[seen]


def _shadow_task(shared: tuple[bytes, dict[str, Any]], shard: Shard) -> tuple[Messages, int]:
    from memberlab.bayes import probit
    from memberlab.bayes.metaprior import laplace_messages, refine_mean
    from memberlab.callouts import CalloutRecommender
    from memberlab.callouts.recommender import BIAS_GROUP

    snapshot, hp = shared
    rec = CalloutRecommender.from_bytes(snapshot)
    X, y = _rows(rec, shard)
    gids, names = rec.feature_index.group_ids(), rec.feature_index.groups
    n = rec.state.n_features
    if X.n_rows == 0:
        return ([], np.zeros(0), np.zeros(0)), 0
    sv = np.full(n, float(hp["shadow_prior_var"]))
    sv[gids == names.index(BIAS_GROUP)] = float(hp["shadow_bias_var"])
    shadow = probit.update(probit.init(n, prior_var=sv, noise=hp["noise"]), X, y)
    shadow = refine_mean(shadow, X, y, gids, n_sweeps=int(hp["shadow_sweeps"]))
    prec, mean = laplace_messages(shadow, X, y)
    return _keyed(rec, prec, mean), X.n_rows


def _replay_task(
    shared: tuple[bytes, dict[str, tuple[float, float]]], shard: Shard
) -> tuple[Messages, int]:
    from memberlab.bayes import GroupPrior, probit
    from memberlab.bayes.metaprior import prior_arrays
    from memberlab.callouts import CalloutRecommender

    snapshot, priors = shared
    rec = CalloutRecommender.from_bytes(snapshot)
    rec.priors.update({k: GroupPrior(*v) for k, v in priors.items()})
    X, y = _rows(rec, shard)
    if X.n_rows == 0:
        return ([], np.zeros(0), np.zeros(0)), 0
    gids, names = rec.feature_index.group_ids(), rec.feature_index.groups
    pm, pv = prior_arrays(gids, names, {g: rec.prior_for(g) for g in names}, rec.default_prior)
    state = probit.update(
        probit.init(len(gids), prior_mean=pm, prior_var=pv, noise=rec.noise), X, y
    )
    prec, mean = probit.likelihood_messages(state)
    return _keyed(rec, prec, mean), X.n_rows


def _add(parts: Sequence[Messages], start: Sequence[tuple[str, str]] = ()) -> Messages:
    """Sum natural parameters by feature key, in shard order."""
    order: dict[tuple[str, str], int] = {k: i for i, k in enumerate(start)}
    for keys, _, _ in parts:
        for k in keys:
            order.setdefault(k, len(order))
    prec = np.zeros(len(order))
    pm = np.zeros(len(order))
    for keys, p, m in parts:
        if keys:
            at = np.fromiter((order[k] for k in keys), dtype=np.int64, count=len(keys))
            np.add.at(prec, at, p)
            np.add.at(pm, at, m)
    return list(order), prec, pm


@dataclass(frozen=True)
class ShardedRefit:
    """What :func:`refit_priors_sharded` estimated.

    Attributes
    ----------
    fit : MetaPriorFit
        Per-group estimates from the combined shadow messages.
    priors : dict of str to GroupPrior
        The refit group priors (mean pinned at 0), as ``refit_priors`` would set them.
    features : FeatureIndex
        The recommender's features, then new ones in order of first appearance.
    posterior : ProbitState or None
        The hindsight replay under the new priors over ``features`` (None without
        replay).
    n_rows : int
        Logged impressions used.
    n_shards : int
    """

    fit: MetaPriorFit
    priors: dict[str, GroupPrior]
    features: FeatureIndex
    posterior: ProbitState | None
    n_rows: int
    n_shards: int


def refit_priors_sharded(
    recommender: CalloutRecommender,
    shards: Sequence[Shard],
    *,
    min_weights: int = 3,
    replay: bool = True,
    executor: Executor | str | None = None,
    progress: Progress | None = None,
) -> ShardedRefit:
    """Refit the recommender's group priors over sharded logs, then replay in hindsight.

    Parameters
    ----------
    recommender : CalloutRecommender
        Read, not changed (its snapshot is sent to each worker once).
    shards : sequence
        Each a sequence of :class:`~memberlab.callouts.Feedback` in log order, or the
        path of a Parquet file with columns ``context`` (JSON), ``item_id``, ``reward``.
        One task per shard (twice with replay).
    min_weights : int
        Groups with fewer weights with data keep their current prior.
    replay : bool
        Retrain from the new priors (sharded) and return the posterior.
    executor : Executor, {"serial", "processes", "ray"} or None
    progress : callable, optional
        Called for the shadow pass and again for the replay pass.

    Returns
    -------
    ShardedRefit
    """
    from memberlab.bayes import GroupPrior, probit
    from memberlab.bayes.groups import FeatureIndex
    from memberlab.bayes.metaprior import fit_group_priors
    from memberlab.callouts.recommender import BIAS_GROUP
    from memberlab.jobs._executor import Executor, get_executor

    if isinstance(min_weights, bool) or int(min_weights) != min_weights or min_weights < 1:
        raise DataValidationError(f"min_weights == {min_weights!r}, must be an integer >= 1.")
    shards = list(shards)
    if not shards:
        raise DataValidationError("shards is empty, must hold at least one shard.")
    snapshot = recommender.to_bytes()
    hp = {
        "shadow_prior_var": recommender.shadow_prior_var,
        "shadow_bias_var": recommender.shadow_bias_var,
        "shadow_sweeps": recommender.shadow_sweeps,
        "noise": recommender.noise,
    }
    base_keys = recommender.feature_index.keys()
    ex = get_executor(executor)
    owned = not isinstance(executor, Executor)
    try:
        if owned:
            ex.start()
        shadow = ex.map(
            _shadow_task, shards, shared=(snapshot, hp), desc="prior refit", progress=progress
        )
        keys, prec, pm = _add([m for m, _ in shadow], base_keys)
        n_rows = sum(n for _, n in shadow)
        index = FeatureIndex.from_keys(keys)
        gids, names = index.group_ids(), index.groups
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(prec > 1e-12, pm / np.where(prec > 1e-12, prec, 1.0), 0.0)
        fit = fit_group_priors(
            probit.init(len(keys)),
            gids,
            names,
            method="deconvolved",
            exclude=[BIAS_GROUP],
            min_var=1e-4,
            messages=(prec, mean),
            upper_quantile=recommender.prior_quantile,
        )
        new = {
            name: GroupPrior(0.0, g.var)
            for name, g in fit.groups.items()
            if g.n_weights >= min_weights and math.isfinite(g.var) and g.var > 0
        }
        posterior = None
        if replay:
            tup = {k: (p.mean, p.var) for k, p in new.items()}
            rep = ex.map(
                _replay_task, shards, shared=(snapshot, tup), desc="replay", progress=progress
            )
            _, rprec, rpm = _add([m for m, _ in rep], keys)
            prior = {g: new.get(g, recommender.prior_for(g)) for g in names}
            p_mean = np.array([prior[names[g]].mean for g in gids])
            p_var = np.array([prior[names[g]].var for g in gids])
            post_prec = 1.0 / p_var + rprec
            var = 1.0 / post_prec
            posterior = probit.ProbitState(
                (p_mean / p_var + rpm) * var, var, p_mean, p_var, recommender.noise
            )
    finally:
        if owned:
            ex.close()
    return ShardedRefit(fit, new, index, posterior, n_rows, len(shards))
