"""Off-policy estimates of a target policy's value from logged decisions with propensities.

Every logged decision ``i`` carries the served action's reward ``r_i`` and the logging
policy's propensity ``p_i`` for it. A target policy is described by ``pi_i``, its
probability of the same logged action in the same context. Model-based estimators also
take ``q_i = r_hat(x_i, a_i)`` (a reward model at the logged action) and ``v_i = sum_a
pi(a | x_i) r_hat(x_i, a)`` (the model's value of the target policy in that context).

- IPS: mean of ``w_i r_i`` with ``w_i = pi_i / p_i``;
- SNIPS: ``sum w_i r_i / sum w_i`` (self-normalised; small bias, much less variance);
- DM: mean of ``v_i`` (no propensities; biased when the model is wrong);
- DR: mean of ``v_i + w_i (r_i - q_i)`` (unbiased if either the propensities or the
  model are right).

Intervals are normal approximations from the per-decision terms (delta method for
SNIPS). The propensities logged by :class:`memberlab.callouts.CalloutRecommender` are
Monte Carlo estimates floored at ``1 / (draws + 1)``, so weights are bounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray

__all__ = [
    "OBD_COLUMNS",
    "OPEResult",
    "direct_method",
    "doubly_robust",
    "estimate_all",
    "ips",
    "snips",
]


@dataclass(frozen=True, slots=True)
class OPEResult:
    """An off-policy value estimate with a normal-approximation interval.

    Attributes
    ----------
    estimator : str
    value, se : float
    lower, upper : float
        Bounds at ``level``.
    n : int
        Logged decisions used.
    ess : float
        Effective sample size of the importance weights (``n`` for DM).
    """

    estimator: str
    value: float
    se: float
    lower: float
    upper: float
    level: float
    n: int
    ess: float

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "se": self.se,
            "lower": self.lower,
            "upper": self.upper,
            "level": self.level,
            "n": self.n,
            "ess": self.ess,
        }


def _vec(x: object, name: str, n: int | None = None) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise DataValidationError(f"{name} has shape {a.shape}, must be 1-D (n_decisions,).")
    if n is not None and a.shape[0] != n:
        raise DataValidationError(f"{name} has length {a.shape[0]}, must be {n}.")
    if not np.all(np.isfinite(a)):
        raise DataValidationError(f"{name} must be finite.")
    return a


def _weights(
    rewards: object, logged_propensity: object, target_propensity: object, clip: float | None
) -> tuple[FloatArray, FloatArray]:
    r = _vec(rewards, "rewards")
    n = r.shape[0]
    if n == 0:
        raise DataValidationError("rewards is empty; need at least one logged decision.")
    p = _vec(logged_propensity, "logged_propensity", n)
    pi = _vec(target_propensity, "target_propensity", n)
    if np.any((p <= 0) | (p > 1)):
        bad = p[(p <= 0) | (p > 1)][0]
        raise DataValidationError(f"logged_propensity contains {bad}, must be in (0, 1].")
    if np.any((pi < 0) | (pi > 1)):
        bad = pi[(pi < 0) | (pi > 1)][0]
        raise DataValidationError(f"target_propensity contains {bad}, must be in [0, 1].")
    w = pi / p
    if clip is not None:
        if not clip > 0:
            raise DataValidationError(f"clip == {clip}, must be > 0.")
        w = np.minimum(w, clip)
    return r, w


def _interval(name: str, value: float, se: float, level: float, n: int, ess: float) -> OPEResult:
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    z = float(special.ndtri(0.5 + level / 2))
    return OPEResult(name, value, se, value - z * se, value + z * se, level, n, ess)


def _ess(w: FloatArray) -> float:
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def _se(terms: FloatArray) -> float:
    n = terms.shape[0]
    return float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")


def ips(
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    *,
    level: float = 0.95,
    clip: float | None = None,
) -> OPEResult:
    """Inverse propensity scoring.

    Parameters
    ----------
    rewards : array of shape (n_decisions,)
    logged_propensity : array of shape (n_decisions,), values in (0, 1]
    target_propensity : array of shape (n_decisions,), values in [0, 1]
    level : float
        Interval level.
    clip : float, optional
        Cap on the importance weights (adds bias, removes variance).
    """
    r, w = _weights(rewards, logged_propensity, target_propensity, clip)
    terms = w * r
    return _interval("IPS", float(terms.mean()), _se(terms), level, r.shape[0], _ess(w))


def snips(
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    *,
    level: float = 0.95,
    clip: float | None = None,
) -> OPEResult:
    """Self-normalised IPS with a delta-method interval (arguments as :func:`ips`)."""
    r, w = _weights(rewards, logged_propensity, target_propensity, clip)
    sw = float(w.sum())
    if sw <= 0:
        raise DataValidationError(
            "target_propensity is 0 on every logged decision; SNIPS is undefined."
        )
    value = float(np.dot(w, r) / sw)
    n = r.shape[0]
    terms = w * (r - value) / (sw / n)
    return _interval("SNIPS", value, _se(terms), level, n, _ess(w))


def direct_method(target_value_hat: object, *, level: float = 0.95) -> OPEResult:
    """Direct method: mean of the reward model's value of the target policy.

    Parameters
    ----------
    target_value_hat : array of shape (n_decisions,)
        ``sum_a pi(a | x_i) r_hat(x_i, a)`` per logged context.
    """
    v = _vec(target_value_hat, "target_value_hat")
    if v.shape[0] == 0:
        raise DataValidationError("target_value_hat is empty.")
    return _interval("DM", float(v.mean()), _se(v), level, v.shape[0], float(v.shape[0]))


def doubly_robust(
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    logged_reward_hat: object,
    target_value_hat: object,
    *,
    level: float = 0.95,
    clip: float | None = None,
) -> OPEResult:
    """Doubly robust estimate.

    Parameters
    ----------
    rewards, logged_propensity, target_propensity : arrays of shape (n_decisions,)
        As in :func:`ips`.
    logged_reward_hat : array of shape (n_decisions,)
        Reward model at the logged action.
    target_value_hat : array of shape (n_decisions,)
        Reward model's value of the target policy in each logged context.
    """
    r, w = _weights(rewards, logged_propensity, target_propensity, clip)
    n = r.shape[0]
    q = _vec(logged_reward_hat, "logged_reward_hat", n)
    v = _vec(target_value_hat, "target_value_hat", n)
    terms = v + w * (r - q)
    return _interval("DR", float(terms.mean()), _se(terms), level, n, _ess(w))


def estimate_all(
    logs: pd.DataFrame,
    *,
    reward: str = "reward",
    logged_propensity: str = "propensity",
    target_propensity: str = "target_propensity",
    logged_reward_hat: str | None = None,
    target_value_hat: str | None = None,
    level: float = 0.95,
    clip: float | None = None,
) -> pd.DataFrame:
    """Every estimator the columns allow, one row each.

    Column names default to memberlab's decision logs; for the Open Bandit Dataset
    layout pass ``reward="click", logged_propensity="propensity_score"`` (see
    :data:`OBD_COLUMNS`).

    Returns
    -------
    DataFrame with columns estimator, value, se, lower, upper, level, n, ess
    """
    for col in (reward, logged_propensity, target_propensity):
        if col not in logs.columns:
            raise DataValidationError(
                f"column {col!r} is missing; columns are {list(logs.columns)}."
            )
    r = logs[reward].to_numpy(dtype=np.float64)
    p = logs[logged_propensity].to_numpy(dtype=np.float64)
    pi = logs[target_propensity].to_numpy(dtype=np.float64)
    out = [ips(r, p, pi, level=level, clip=clip), snips(r, p, pi, level=level, clip=clip)]
    if target_value_hat is not None:
        v = logs[target_value_hat].to_numpy(dtype=np.float64)
        out.append(direct_method(v, level=level))
        if logged_reward_hat is not None:
            q = logs[logged_reward_hat].to_numpy(dtype=np.float64)
            out.append(doubly_robust(r, p, pi, q, v, level=level, clip=clip))
    return pd.DataFrame([o.as_dict() for o in out])


#: Column names of the Open Bandit Dataset (Saito et al., 2021) for :func:`estimate_all`.
OBD_COLUMNS: Mapping[str, str] = {"reward": "click", "logged_propensity": "propensity_score"}
