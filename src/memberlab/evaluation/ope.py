"""Off-policy estimates of a target policy's value from logged decisions with propensities.

Every logged decision ``i`` carries the served action's reward ``r_i`` and the logging
policy's propensity ``p_i`` for it (at its position, for ranked lists). A target policy
is described by ``pi_i``, its probability of the same logged action at the same position
in the same context. Model-based estimators also take ``q_i = r_hat(x_i, a_i)`` (a reward
model at the logged action) and ``v_i = sum_a pi(a | x_i) r_hat(x_i, a)`` (the model's
value of the target policy in that context). With ``w_i = pi_i / p_i`` (optionally
clipped at ``clip``), the estimators are Open Bandit Pipeline's (obp 0.4.1,
``obp/ope/estimators.py``), term by term:

========== ==========================================================================
ipw        mean of ``w r``
snipw      mean of ``w r / mean(w)``
dm         mean of ``v``
dr         mean of ``v + w (r - q)``
sndr       mean of ``v + w (r - q) / mean(w)``
switch-dr  mean of ``v + 1{w <= tau} w (r - q)``
dr-os      mean of ``v + w_o (r - q)`` with ``w_o = lambda w / (w^2 + lambda)``
========== ==========================================================================

Each is ``mean(a) + mean(b) / mean(d)`` for per-decision vectors ``a, b, d`` (``d = 1``
unless self-normalised), which gives one delta-method standard error, one bootstrap and
one concentration bound for all of them. Intervals: ``"normal"`` (delta method),
``"bootstrap"`` (percentile, seeded; decisions with equal terms are pooled and resampled
by multinomial counts, which is the same distribution as resampling rows and costs
``O(n_distinct)`` per resample), and an empirical-Bernstein lower bound (Maurer & Pontil
2009, Theorem 4) on the per-decision terms, reported with every estimate.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray

__all__ = [
    "ESTIMATORS",
    "OBD_COLUMNS",
    "OPEResult",
    "UntrustworthyEstimateWarning",
    "canonical_estimator",
    "direct_method",
    "doubly_robust",
    "estimate",
    "estimate_all",
    "ips",
    "snips",
]

log = logging.getLogger(__name__)

#: obp's estimator names, in the order reports list them.
ESTIMATORS = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os")
_ALIASES = {
    "ips": "ipw",
    "snips": "snipw",
    "switch_dr": "switch-dr",
    "switchdr": "switch-dr",
    "dros": "dr-os",
    "dr_os": "dr-os",
}
_DISPLAY = {
    "ipw": "IPS",
    "snipw": "SNIPS",
    "dm": "DM",
    "dr": "DR",
    "sndr": "SNDR",
    "switch-dr": "Switch-DR",
    "dr-os": "DR-OS",
}
_MODEL_BASED = {"dm", "dr", "sndr", "switch-dr", "dr-os"}


class UntrustworthyEstimateWarning(UserWarning):
    """The importance weights make an off-policy estimate untrustworthy (tiny effective
    sample size, or a few decisions carrying most of the weight)."""


def canonical_estimator(name: str) -> str:
    """obp's name of an estimator (``"IPS"``, ``"ips"`` and ``"ipw"`` are all ``"ipw"``)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ESTIMATORS:
        raise DataValidationError(
            f"estimator == {name!r}, must be one of {list(ESTIMATORS)} (or {sorted(_ALIASES)})."
        )
    return key


@dataclass(frozen=True, slots=True)
class OPEResult:
    """An off-policy value estimate with its interval and weight diagnostics.

    Attributes
    ----------
    estimator : str
        Display name (``"IPS"``, ``"SNIPS"``, ``"DR"``, ...).
    value, se : float
    lower, upper : float
        Interval at ``level`` by ``method``.
    level : float
    n : int
        Logged decisions used.
    ess : float
        Effective sample size of the importance weights, ``(sum w)^2 / sum w^2`` (``n``
        for DM).
    max_weight : float
        The largest importance weight (0 for DM).
    method : str
        ``"normal"`` or ``"bootstrap"``.
    eb_lower : float
        Empirical-Bernstein lower bound at ``level`` on the per-decision terms.
    warning : str or None
        Why the estimate is untrustworthy, when it is.
    """

    estimator: str
    value: float
    se: float
    lower: float
    upper: float
    level: float
    n: int
    ess: float
    max_weight: float = 0.0
    method: str = "normal"
    eb_lower: float = float("nan")
    warning: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "se": self.se,
            "lower": self.lower,
            "upper": self.upper,
            "level": self.level,
            "n": self.n,
            "ess": self.ess,
            "max_weight": self.max_weight,
            "method": self.method,
            "eb_lower": self.eb_lower,
            "warning": self.warning,
            **self.extra,
        }


# ---------------------------------------------------------------------- validation


def _vec(x: object, name: str, n: int | None = None) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise DataValidationError(f"{name} has shape {a.shape}, must be 1-D (n_decisions,).")
    if n is not None and a.shape[0] != n:
        raise DataValidationError(f"{name} has length {a.shape[0]}, must be {n}.")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(f"{name} must be finite; row {i} is {float(a[i])}.")
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
    bad = (p <= 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"logged_propensity contains {float(p[i])} (row {i}), must be in (0, 1]."
        )
    bad = (pi < 0) | (pi > 1 + 1e-12)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"target_propensity contains {float(pi[i])} (row {i}), must be in [0, 1]."
        )
    w = pi / p
    if clip is not None:
        if not clip > 0:
            raise DataValidationError(f"clip == {clip}, must be > 0.")
        w = np.minimum(w, clip)
    return r, w


def _ess(w: FloatArray) -> float:
    s2 = float(np.dot(w, w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    return float(special.ndtri(0.5 + level / 2))


# ---------------------------------------------------------------------- the general form


def _parts(
    name: str,
    r: FloatArray,
    w: FloatArray,
    q: FloatArray | None,
    v: FloatArray | None,
    *,
    tau: float,
    lambda_: float,
) -> tuple[FloatArray | None, FloatArray | None, FloatArray | None]:
    """Per-decision ``a, b, d`` with value ``mean(a) + mean(b) / mean(d)`` (None = 0 / 1)."""
    if name in _MODEL_BASED and v is None:
        raise DataValidationError(f"estimator {name!r} needs the reward model's target values.")
    if name in _MODEL_BASED - {"dm"} and q is None:
        raise DataValidationError(
            f"estimator {name!r} needs the reward model at the logged action."
        )
    if name == "ipw":
        return None, w * r, None
    if name == "snipw":
        return None, w * r, w
    assert v is not None
    if name == "dm":
        return v, None, None
    assert q is not None
    resid = r - q
    if name == "dr":
        return v, w * resid, None
    if name == "sndr":
        return v, w * resid, w
    if name == "switch-dr":
        if not tau >= 0:
            raise DataValidationError(f"tau == {tau}, must be >= 0.")
        return v, np.where(w <= tau, w, 0.0) * resid, None
    if name == "dr-os":
        if not lambda_ >= 0:
            raise DataValidationError(f"lambda_ == {lambda_}, must be >= 0.")
        if math.isinf(lambda_):
            return v, w * resid, None
        denom = w * w + lambda_
        wo = np.divide(lambda_ * w, denom, out=np.zeros_like(w), where=denom > 0)
        return v, wo * resid, None
    raise AssertionError(name)


def _combine(
    a: FloatArray | None, b: FloatArray | None, d: FloatArray | None, n: int
) -> tuple[float, FloatArray]:
    """Value and per-decision influence terms (delta method for the ratio)."""
    mean_a = float(a.mean()) if a is not None else 0.0
    if b is None:
        infl = a if a is not None else np.zeros(n)
        return mean_a, infl
    mean_d = float(d.mean()) if d is not None else 1.0
    if mean_d <= 0:
        raise DataValidationError(
            "target_propensity is 0 on every logged decision; a self-normalised estimate is "
            "undefined."
        )
    ratio = float(b.mean()) / mean_d
    infl = (b - ratio * d) / mean_d + ratio if d is not None else b.copy()
    if a is not None:
        infl = infl + a
    return mean_a + ratio, infl


def _bootstrap(
    a: FloatArray | None,
    b: FloatArray | None,
    d: FloatArray | None,
    n: int,
    n_resamples: int,
    gen: np.random.Generator,
) -> FloatArray:
    """Bootstrap replicates of ``mean(a) + mean(b) / mean(d)`` over resampled decisions."""
    cols = [x for x in (a, b, d) if x is not None]
    uniq, counts = _distinct_rows(cols)
    k = uniq.shape[0]
    j = 0
    ua = uniq[:, j] if a is not None else None
    j += a is not None
    ub = uniq[:, j] if b is not None else None
    j += b is not None
    ud = uniq[:, j] if d is not None else None
    probs = counts / n
    out = np.empty(n_resamples)
    block = max(1, min(n_resamples, 20_000_000 // max(k, 1)))
    for s in range(0, n_resamples, block):
        m = min(block, n_resamples - s)
        if k == n:
            c = np.stack([np.bincount(gen.integers(0, n, n), minlength=n) for _ in range(m)])
        else:
            c = gen.multinomial(n, probs, size=m)
        c = c.astype(np.float64)
        val = (c @ ua) / n if ua is not None else np.zeros(m)
        if ub is not None:
            den = (c @ ud) / n if ud is not None else np.ones(m)
            with np.errstate(invalid="ignore", divide="ignore"):
                val = val + ((c @ ub) / n) / den
        out[s : s + m] = val
    return out


def _distinct_rows(cols: list[FloatArray]) -> tuple[FloatArray, np.ndarray]:
    """Distinct rows of the stacked columns and their counts (hash-based, O(n))."""
    code = np.zeros(cols[0].shape[0], dtype=np.int64)
    for c in cols:
        cj, uj = pd.factorize(c, sort=False)
        code = code * len(uj) + cj
        code, _ = pd.factorize(code, sort=False)  # keep the codes small (no overflow)
    code = np.asarray(code)
    counts = np.bincount(code)
    first = np.full(counts.shape[0], -1, dtype=np.int64)
    first[code[::-1]] = np.arange(code.shape[0] - 1, -1, -1)
    return np.column_stack([c[first] for c in cols]), counts


def _eb_lower(terms: FloatArray, level: float) -> float:
    """Maurer & Pontil (2009, Thm 4) lower bound on the mean of terms in their range."""
    n = terms.shape[0]
    if n < 2:
        return float("-inf")
    lo, hi = min(float(terms.min()), 0.0), max(float(terms.max()), 0.0)
    span = hi - lo
    delta = 1.0 - level
    ln = math.log(2.0 / delta)
    var = float(terms.var(ddof=1))
    return float(terms.mean() - math.sqrt(2 * var * ln / n) - 7 * span * ln / (3 * (n - 1)))


def _trust(w: FloatArray | None, n: int) -> str | None:
    if w is None:
        return None
    ess = _ess(w)
    sw = float(w.sum())
    if ess < max(30.0, 0.01 * n):
        return f"effective sample size {ess:.1f} of {n} decisions; the weights are too uneven."
    if sw > 0 and float(w.max()) / sw > 0.05:
        return (
            f"one decision carries {100 * float(w.max()) / sw:.1f}% of the total weight "
            f"(max weight {float(w.max()):.3g})."
        )
    return None


def estimate(
    name: str,
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    logged_reward_hat: object | None = None,
    target_value_hat: object | None = None,
    *,
    level: float = 0.95,
    clip: float | None = None,
    tau: float = 1.0,
    lambda_: float = 10.0,
    interval: str = "normal",
    n_bootstrap: int = 1000,
    rng: RNGLike = None,
    warn: bool = True,
) -> OPEResult:
    """One estimator by its obp name, on per-decision vectors.

    Parameters
    ----------
    name : str
        ``ipw``, ``snipw``, ``dm``, ``dr``, ``sndr``, ``switch-dr`` or ``dr-os`` (or
        ``ips``, ``snips``, display names).
    rewards : array of shape (n_decisions,)
    logged_propensity : array of shape (n_decisions,), values in (0, 1]
    target_propensity : array of shape (n_decisions,), values in [0, 1]
    logged_reward_hat : array of shape (n_decisions,), optional
        Reward model at the logged action (DR family).
    target_value_hat : array of shape (n_decisions,), optional
        ``sum_a pi(a | x_i) r_hat(x_i, a)`` (DM and the DR family).
    level : float
        Interval level, in (0, 1).
    clip : float, optional
        Cap on the importance weights (adds bias, removes variance).
    tau : float
        Switch-DR's threshold (obp's default 1).
    lambda_ : float
        DR-OS's shrinkage (obp's default 0 reduces DR-OS to DM; ``inf`` is DR).
    interval : {"normal", "bootstrap"}
    n_bootstrap : int
        Resamples of the percentile bootstrap.
    rng : int, Generator or None
        Seed of the bootstrap.
    warn : bool
        Emit :class:`UntrustworthyEstimateWarning` when the weights are too uneven.
    """
    key = canonical_estimator(name)
    if interval not in ("normal", "bootstrap"):
        raise DataValidationError(f"interval == {interval!r}, must be 'normal' or 'bootstrap'.")
    z = _z(level)
    w: FloatArray | None = None
    q: FloatArray | None = None
    v: FloatArray | None = None
    if key == "dm" and logged_propensity is None:
        v = _vec(target_value_hat, "target_value_hat")
        r = np.zeros_like(v)
    else:
        r, w_ = _weights(rewards, logged_propensity, target_propensity, clip)
        w = w_
        n0 = r.shape[0]
        q = None if logged_reward_hat is None else _vec(logged_reward_hat, "logged_reward_hat", n0)
        v = None if target_value_hat is None else _vec(target_value_hat, "target_value_hat", n0)
    n = r.shape[0]
    if n == 0:
        raise DataValidationError("no logged decisions to evaluate.")
    a, b, d = _parts(key, r, w if w is not None else np.ones(n), q, v, tau=tau, lambda_=lambda_)
    value, infl = _combine(a, b, d, n)
    se = float(infl.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    if interval == "normal":
        lower, upper = value - z * se, value + z * se
    else:
        if int(n_bootstrap) != n_bootstrap or n_bootstrap < 2:
            raise DataValidationError(f"n_bootstrap == {n_bootstrap}, must be an integer >= 2.")
        reps = _bootstrap(a, b, d, n, int(n_bootstrap), as_generator(rng))
        reps = reps[np.isfinite(reps)]
        alpha = 1.0 - level
        lower = float(np.quantile(reps, alpha / 2))
        upper = float(np.quantile(reps, 1 - alpha / 2))
        se = float(reps.std(ddof=1))
    uses_w = key != "dm"
    ww = w if (uses_w and w is not None) else None
    message = _trust(ww, n)
    if message and warn:
        warnings.warn(f"{_DISPLAY[key]}: {message}", UntrustworthyEstimateWarning, stacklevel=2)
    return OPEResult(
        _DISPLAY[key],
        value,
        se,
        float(lower),
        float(upper),
        level,
        n,
        _ess(ww) if ww is not None else float(n),
        float(ww.max()) if ww is not None else 0.0,
        interval,
        _eb_lower(infl, level),
        message,
    )


# ---------------------------------------------------------------------- named shortcuts


def ips(
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    *,
    level: float = 0.95,
    clip: float | None = None,
    **kw: Any,
) -> OPEResult:
    """Inverse propensity scoring (obp's ``ipw``); keywords as :func:`estimate`.

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
    return estimate(
        "ipw", rewards, logged_propensity, target_propensity, level=level, clip=clip, **kw
    )


def snips(
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    *,
    level: float = 0.95,
    clip: float | None = None,
    **kw: Any,
) -> OPEResult:
    """Self-normalised IPS (obp's ``snipw``) with a delta-method interval."""
    return estimate(
        "snipw", rewards, logged_propensity, target_propensity, level=level, clip=clip, **kw
    )


def direct_method(target_value_hat: object, *, level: float = 0.95, **kw: Any) -> OPEResult:
    """Direct method: mean of the reward model's value of the target policy.

    Parameters
    ----------
    target_value_hat : array of shape (n_decisions,)
        ``sum_a pi(a | x_i) r_hat(x_i, a)`` per logged context.
    """
    return estimate("dm", None, None, None, None, target_value_hat, level=level, **kw)


def doubly_robust(
    rewards: object,
    logged_propensity: object,
    target_propensity: object,
    logged_reward_hat: object,
    target_value_hat: object,
    *,
    level: float = 0.95,
    clip: float | None = None,
    **kw: Any,
) -> OPEResult:
    """Doubly robust estimate (arguments as :func:`estimate`)."""
    return estimate(
        "dr",
        rewards,
        logged_propensity,
        target_propensity,
        logged_reward_hat,
        target_value_hat,
        level=level,
        clip=clip,
        **kw,
    )


def estimate_all(
    logs: pd.DataFrame,
    *,
    reward: str = "reward",
    logged_propensity: str = "propensity",
    target_propensity: str = "target_propensity",
    logged_reward_hat: str | None = None,
    target_value_hat: str | None = None,
    estimators: Sequence[str] | None = None,
    level: float = 0.95,
    clip: float | None = None,
    **kw: Any,
) -> pd.DataFrame:
    """Every estimator the columns allow (or those named), one row each.

    Column names default to memberlab's decision logs; for the Open Bandit Dataset
    layout pass ``reward="click", logged_propensity="propensity_score"`` (see
    :data:`OBD_COLUMNS`).

    Returns
    -------
    DataFrame with the columns of :meth:`OPEResult.as_dict`
    """
    for col in (reward, logged_propensity, target_propensity):
        if col not in logs.columns:
            raise DataValidationError(
                f"column {col!r} is missing; columns are {list(logs.columns)}."
            )
    r = logs[reward].to_numpy(dtype=np.float64)
    p = logs[logged_propensity].to_numpy(dtype=np.float64)
    pi = logs[target_propensity].to_numpy(dtype=np.float64)
    q = logs[logged_reward_hat].to_numpy(dtype=np.float64) if logged_reward_hat else None
    v = logs[target_value_hat].to_numpy(dtype=np.float64) if target_value_hat else None
    if estimators is None:
        names: list[str] = ["ipw", "snipw"]
        if v is not None:
            names.append("dm")
            if q is not None:
                names.append("dr")
    else:
        names = [canonical_estimator(e) for e in estimators]
    out = [estimate(e, r, p, pi, q, v, level=level, clip=clip, **kw) for e in names]
    return pd.DataFrame([o.as_dict() for o in out])


def with_extra(result: OPEResult, **extra: Any) -> OPEResult:
    """A copy of ``result`` with more entries in ``extra`` (e.g. the position)."""
    return replace(result, extra={**result.extra, **extra})


#: Column names of the Open Bandit Dataset (Saito et al., 2021) for :func:`estimate_all`.
OBD_COLUMNS: Mapping[str, str] = {"reward": "click", "logged_propensity": "propensity_score"}
