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
``O(n_distinct)`` per resample), ``"studentized"`` (bootstrap-t: quantiles of
``(value* - value) / se*`` over the same resamples, each with its own delta-method
standard error; second-order accurate, Hall 1992, so it follows the skew that heavy
weights give the terms, where the percentile and normal intervals put too little above
the estimate), and an empirical-Bernstein lower bound (Maurer & Pontil 2009, Theorem 4)
on the per-decision terms, reported with every estimate.

Every estimate reports the weights' effective sample size (Kish), the effective sample
size of its variance and the largest weight, and carries a warning when either
effective sample size is under :data:`MIN_EFFECTIVE` (see :func:`weight_diagnostics`).
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
    "MIN_EFFECTIVE",
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
    "weight_diagnostics",
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
_UNBOUNDED = {"ipw", "snipw", "dr", "sndr"}  # estimators that use the raw weights
#: Interval methods of :func:`estimate`.
INTERVALS = ("normal", "bootstrap", "studentized")


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
        ``"normal"``, ``"bootstrap"`` (percentile) or ``"studentized"``.
    eb_lower : float
        Empirical-Bernstein lower bound at ``level`` on the per-decision terms.
    warning : str or None
        Why the weights make the estimate untrustworthy, when they do: Kish's ``ess``
        or the variance's effective sample size ``ess_variance`` is below
        :data:`MIN_EFFECTIVE` (see :func:`weight_diagnostics`). IPS, SNIPS, DR and SNDR
        are judged; Switch-DR and DR-OS bound their weights, DM has none.
    ess_variance : float
        Effective sample size of the variance estimate, ``(sum w^2)^2 / sum w^4`` (Owen
        2013, section 9.3; ``n`` for DM): how many decisions the standard error rests on.
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
    ess_variance: float = float("nan")
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
            "ess_variance": self.ess_variance,
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
) -> tuple[FloatArray, FloatArray]:
    """Bootstrap replicates of ``mean(a) + mean(b) / mean(d)`` over resampled decisions,
    and each replicate's delta-method standard error (for the studentized interval).

    The standard error of a resample is that of its influence terms
    ``g = a + (b - R d) / mean(d)``; its mean square is a combination of the resample's
    sums of ``a^2, b^2, d^2, ab, ad, bd``, so it costs six dot products per resample."""
    cols = [x for x in (a, b, d) if x is not None]
    uniq, counts = _distinct_rows(cols)
    k = uniq.shape[0]
    j = 0
    ua = uniq[:, j] if a is not None else np.zeros(k)
    j += a is not None
    ub = uniq[:, j] if b is not None else np.zeros(k)
    j += b is not None
    ud = uniq[:, j] if d is not None else np.ones(k)
    # per distinct row: a, b, d and the products the resample's variance needs
    table = np.column_stack([ua, ub, ud, ua * ua, ub * ub, ud * ud, ua * ub, ua * ud, ub * ud])
    probs = counts / n
    out = np.empty(n_resamples)
    out_se = np.empty(n_resamples)
    block = max(1, min(n_resamples, 20_000_000 // max(k, 1)))
    for s in range(0, n_resamples, block):
        m = min(block, n_resamples - s)
        if k == n:
            c = np.stack([np.bincount(gen.integers(0, n, n), minlength=n) for _ in range(m)])
        else:
            c = gen.multinomial(n, probs, size=m)
        sums = (c.astype(np.float64) @ table) / n  # resample means of each column
        ma, mb, md, maa, mbb, mdd, mab, mad, mbd = sums.T
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = mb / md
            # mean of g^2 minus mean(g)^2 (= ma^2: the b - R d part has mean 0)
            mg2 = maa + (mbb - 2 * ratio * mbd + ratio**2 * mdd) / md**2
            mg2 = mg2 + 2 * (mab - ratio * mad) / md
            var = np.maximum(mg2 - ma * ma, 0.0) * n / max(n - 1, 1)
        out[s : s + m] = ma + ratio
        out_se[s : s + m] = np.sqrt(var / n)
    return out, out_se


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


#: Below this many effective decisions (Kish's n_e, or Owen's n_e,sigma for the variance)
#: an estimate is flagged: a variance estimated from 30 equal-weight decisions already needs
#: a 95% t quantile 4% wider than the normal one (2.045 vs 1.960), and fewer make the
#: interval's width itself a guess.
MIN_EFFECTIVE = 30.0


def weight_diagnostics(w: FloatArray) -> tuple[float, float, float]:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``, the effective sample size of
    the variance estimate ``(sum w^2)^2 / sum w^4`` (Owen 2013, *Monte Carlo theory,
    methods and examples*, section 9.3) and the largest weight."""
    top = float(w.max()) if w.size else 0.0
    if not top > 0:
        return 0.0, 0.0, top
    u = w / top  # scaled so that w^4 cannot overflow
    s1, s2, s4 = float(u.sum()), float(np.dot(u, u)), float(np.sum((u * u) ** 2))
    return s1 * s1 / s2, s2 * s2 / s4, top


def _trust(w: FloatArray | None, n: int) -> str | None:
    """Why the weights make an estimate untrustworthy, or None.

    Kish's ``n_e`` says how many equal-weight decisions the estimate is worth; Owen's
    ``n_e,sigma`` how many its variance (hence the standard error and every interval
    built on it) rests on. Heavy-tailed weights (a few decisions with weights 25-80
    among many below 1, as on logs of a policy that learnt fast) leave ``n_e`` in the
    hundreds while ``n_e,sigma`` falls under 10: the interval's width is then set by a
    handful of decisions, and it misses the truth far more often than its level says.
    """
    if w is None:
        return None
    ess, ess_var, top = weight_diagnostics(w)
    if ess < MIN_EFFECTIVE:
        return (
            f"effective sample size {ess:.1f} of {n} decisions (max weight {top:.3g}); "
            f"fewer than {MIN_EFFECTIVE:.0f}, the weights are too uneven to trust."
        )
    if ess_var < MIN_EFFECTIVE:
        return (
            f"the variance rests on {ess_var:.1f} effective decisions of {n} (max weight "
            f"{top:.3g}, ESS {ess:.0f}); fewer than {MIN_EFFECTIVE:.0f}: the weights are "
            f"heavy-tailed and the interval is not to be trusted."
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
    interval : {"normal", "bootstrap", "studentized"}
        Delta-method normal interval, percentile bootstrap or studentized bootstrap
        (bootstrap-t around the delta-method standard error).
    n_bootstrap : int
        Resamples of the bootstraps.
    rng : int, Generator or None
        Seed of the bootstrap.
    warn : bool
        Emit :class:`UntrustworthyEstimateWarning` when the weights are too uneven.
    """
    key = canonical_estimator(name)
    if interval not in INTERVALS:
        raise DataValidationError(f"interval == {interval!r}, must be one of {list(INTERVALS)}.")
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
        reps, reps_se = _bootstrap(a, b, d, n, int(n_bootstrap), as_generator(rng))
        alpha = 1.0 - level
        if interval == "bootstrap":
            reps = reps[np.isfinite(reps)]
            lower = float(np.quantile(reps, alpha / 2))
            upper = float(np.quantile(reps, 1 - alpha / 2))
            se = float(reps.std(ddof=1))
        else:  # studentized: quantiles of t* = (value* - value) / se*, around the value
            with np.errstate(invalid="ignore", divide="ignore"):
                t = (reps - value) / reps_se
            t = t[np.isfinite(t)]
            if t.size < 2:  # every resample has no spread: nothing to studentize
                lower = upper = value
            else:
                lower = value - float(np.quantile(t, 1 - alpha / 2)) * se
                upper = value - float(np.quantile(t, alpha / 2)) * se
    # the weights that multiply rewards or residuals unbounded; Switch-DR and DR-OS bound
    # theirs by construction (by tau, by sqrt(lambda) / 2), DM has none
    judged = w if key in _UNBOUNDED else None
    message = _trust(judged, n)
    if message and warn:
        warnings.warn(f"{_DISPLAY[key]}: {message}", UntrustworthyEstimateWarning, stacklevel=2)
    ww = w if key != "dm" else None
    ess, ess_var, top = weight_diagnostics(ww) if ww is not None else (float(n), float(n), 0.0)
    return OPEResult(
        _DISPLAY[key],
        value,
        se,
        float(lower),
        float(upper),
        level,
        n,
        ess,
        top,
        interval,
        _eb_lower(infl, level),
        message,
        ess_var,
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
