"""Off-policy evaluation of a target policy on a :class:`BanditDataset`.

:func:`fit_reward_model` cross-fits any scikit-learn regressor or classifier (one model
per position, on the context and the action's features, as obp's ``RegressionModel``);
:func:`evaluate` turns a target policy's action probabilities and the reward model into
the per-decision vectors of :mod:`memberlab.evaluation.ope` and runs the named
estimators on all rounds (obp's standard per-position form: each round is evaluated at
its own position) and, with ``by_position``, on each position separately.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memberlab._errors import DataValidationError, UnknownItemError
from memberlab._rng import RNGLike, as_generator, spawn
from memberlab._typing import FloatArray
from memberlab.evaluation.dataset import BanditDataset
from memberlab.evaluation.ope import (
    _MODEL_BASED,
    OPEResult,
    canonical_estimator,
    estimate,
    with_extra,
)
from memberlab.evaluation.policies import TargetPolicy

__all__ = ["OPEReport", "evaluate", "fit_reward_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OPEReport:
    """Estimates of one target policy on one dataset.

    Attributes
    ----------
    estimates : list of OPEResult
    n : int
    on_policy : float
        Mean logged reward (the logging policy's own value).
    policy : str
    by_position : list of OPEResult
        Per-position estimates (``extra["position"]``), when asked for.
    """

    estimates: list[OPEResult]
    n: int
    on_policy: float
    policy: str
    by_position: list[OPEResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        keys = ("estimator", "value", "se", "lower", "upper", "ess", "max_weight", "ess_variance")
        out: dict[str, Any] = {
            "policy": self.policy,
            "estimates": [
                {k: e.as_dict()[k] for k in keys}
                | {"eb_lower": e.eb_lower, "method": e.method, "warning": e.warning}
                for e in self.estimates
            ],
            "n": self.n,
            "on_policy": self.on_policy,
        }
        if self.by_position:
            out["by_position"] = [e.as_dict() for e in self.by_position]
        return out

    def best(self, estimator: str) -> OPEResult:
        for e in self.estimates:
            if canonical_estimator(e.estimator) == canonical_estimator(estimator):
                return e
        raise UnknownItemError(
            f"estimator {estimator!r} is not in this report; it has "
            f"{[e.estimator for e in self.estimates]}."
        )


def _features(data: BanditDataset, rows: np.ndarray, actions: np.ndarray) -> FloatArray:
    ac = data.action_context if data.action_context is not None else np.eye(data.n_actions)
    return np.c_[data.context[rows], ac[actions]]


def _predict(model: Any, X: FloatArray) -> FloatArray:
    from sklearn.base import is_classifier  # scikit-learn loads with the first reward model

    if is_classifier(model):
        proba = model.predict_proba(X)
        classes = list(model.classes_)
        if len(classes) == 1:
            return np.full(X.shape[0], float(classes[0]))
        return np.asarray(proba[:, classes.index(1) if 1 in classes else -1], dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64)


def _default_model(data: BanditDataset) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    if np.isin(data.reward, (0.0, 1.0)).all():
        return LogisticRegression(C=1.0, max_iter=1000)
    return Ridge(alpha=1.0)


def fit_reward_model(
    data: BanditDataset,
    model: Any = None,
    *,
    n_folds: int = 2,
    rng: RNGLike = 0,
    chunk: int = 200_000,
) -> FloatArray:
    """Cross-fitted reward predictions for every action at each round's position.

    Parameters
    ----------
    data : BanditDataset
    model : scikit-learn regressor or classifier, optional
        Cloned per position and fold; a classifier's probability of class 1 is the
        prediction. Default: logistic regression for 0/1 rewards, else ridge.
    n_folds : int
        Folds of the cross-fitting (1 = fit and predict on all rounds, as obp's default).
    rng : int, Generator or None
        Seeds the fold assignment.

    Returns
    -------
    q_hat : ndarray of shape (n_rounds, n_actions)
    """
    if int(n_folds) != n_folds or n_folds < 1:
        raise DataValidationError(f"n_folds == {n_folds}, must be an integer >= 1.")
    from sklearn.base import clone, is_classifier  # loaded with the first reward model
    from sklearn.model_selection import KFold

    base = _default_model(data) if model is None else model
    n, A = data.n_rounds, data.n_actions
    q = np.zeros((n, A))
    seed = int(as_generator(rng).integers(0, 2**31 - 1))
    for pos in range(data.len_list):
        rows = np.flatnonzero(data.position == pos)
        if rows.size == 0:
            continue
        if n_folds == 1 or rows.size < 2 * n_folds:
            splits = [(np.arange(rows.size), np.arange(rows.size))]
        else:
            splits = list(KFold(n_folds, shuffle=True, random_state=seed).split(rows))
        for train, test in splits:
            tr, te = rows[train], rows[test]
            y = data.reward[tr]
            m = clone(base)
            if is_classifier(m) and np.unique(y).size < 2:
                q[te] = float(y[0]) if y.size else 0.0
                continue
            m.fit(_features(data, tr, data.action[tr]), y)
            step = max(1, chunk // A)
            for s in range(0, te.size, step):
                blk = te[s : s + step]
                rr = np.repeat(blk, A)
                aa = np.tile(np.arange(A), blk.size)
                q[blk] = _predict(m, _features(data, rr, aa)).reshape(blk.size, A)
    return q


def evaluate(
    data: BanditDataset,
    policy: TargetPolicy | FloatArray,
    *,
    estimators: Sequence[str] = ("ipw", "snipw", "dm", "dr"),
    reward_model: Any = None,
    q_hat: FloatArray | None = None,
    n_folds: int = 2,
    clip: float | None = None,
    tau: float = 1.0,
    lambda_: float = 10.0,
    level: float = 0.95,
    interval: str = "normal",
    n_bootstrap: int = 1000,
    by_position: bool = False,
    rng: RNGLike = 0,
    warn: bool = True,
) -> OPEReport:
    """Estimate a target policy's value on logged rounds.

    Parameters
    ----------
    data : BanditDataset
    policy : TargetPolicy or ndarray
        A policy object, or its action probabilities of shape (n_rounds, n_actions) at
        each round's position, or obp's ``action_dist`` of shape
        (n_rounds, n_actions, len_list).
    estimators : sequence of str
        obp names (``ipw, snipw, dm, dr, sndr, switch-dr, dr-os``).
    reward_model : scikit-learn estimator, optional
        See :func:`fit_reward_model`; ignored when ``q_hat`` is given.
    q_hat : ndarray of shape (n_rounds, n_actions) or (n_rounds, n_actions, len_list)
        Reward predictions, when already at hand.
    clip, tau, lambda_, level, interval, n_bootstrap
        As in :func:`memberlab.evaluation.ope.estimate`.
    by_position : bool
        Also report each position on its own.
    rng : int, Generator or None
        Seeds the folds and the bootstrap (child seeds per estimator).
    """
    names = [canonical_estimator(e) for e in estimators]
    if not names:
        raise DataValidationError("estimators is empty; name at least one.")
    rows = np.arange(data.n_rounds)
    if isinstance(policy, np.ndarray):
        dist = policy
        pname = "action_dist"
    else:
        dist = policy.action_dist(data)
        pname = policy.name
    if dist.ndim == 3:
        dist = dist[rows, :, data.position]
    if dist.shape != (data.n_rounds, data.n_actions):
        raise DataValidationError(
            f"the policy's action probabilities have shape {dist.shape}, must be "
            f"({data.n_rounds}, {data.n_actions})."
        )
    sums = dist.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        i = int(np.flatnonzero(~np.isclose(sums, 1.0, atol=1e-6))[0])
        raise DataValidationError(
            f"the policy's probabilities at round {i} sum to {float(sums[i])}, must sum to 1."
        )
    gens = spawn(rng, len(names) + 1)
    pi = dist[rows, data.action]
    q_log = v = None
    if any(n in _MODEL_BASED for n in names):
        if q_hat is None:
            q_hat = fit_reward_model(data, reward_model, n_folds=n_folds, rng=gens[-1])
        elif q_hat.ndim == 3:
            q_hat = q_hat[rows, :, data.position]
        q_log = q_hat[rows, data.action]
        v = (dist * q_hat).sum(axis=1)
    kw = dict(
        level=level, clip=clip, tau=tau, lambda_=lambda_, interval=interval,
        n_bootstrap=n_bootstrap, warn=warn,
    )  # fmt: skip

    def run(mask: np.ndarray | None, g: list[np.random.Generator]) -> list[OPEResult]:
        sel = slice(None) if mask is None else mask
        return [
            estimate(
                e,
                data.reward[sel],
                data.pscore[sel],
                pi[sel],
                None if q_log is None else q_log[sel],
                None if v is None else v[sel],
                rng=g[j],
                **kw,  # type: ignore[arg-type]
            )
            for j, e in enumerate(names)
        ]

    results = run(None, gens)
    per_pos: list[OPEResult] = []
    if by_position:
        pos_gens = spawn(gens[-1], data.len_list)
        for pos in range(data.len_list):
            mask = data.position == pos
            if mask.sum() < 2:
                continue
            g = spawn(pos_gens[pos], len(names))
            per_pos += [with_extra(r, position=pos) for r in run(mask, g)]
    return OPEReport(results, data.n_rounds, float(data.reward.mean()), pname, per_pos)
