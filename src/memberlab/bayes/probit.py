"""Bayesian probit regression by assumed density filtering (AdPredictor / BLIP).

Each weight has an independent Gaussian posterior N(mean_i, var_i). For a row x with
label y in {0, 1} (s = 2y - 1), the likelihood is Phi(s * x.w / noise); assumed density
filtering projects the exact posterior back onto independent Gaussians (Graepel et al.,
2010):

    S^2  = noise^2 + sum_i x_i^2 var_i
    t    = s * (x.mean) / S
    mean_i <- mean_i + s * x_i var_i / S * v(t)
    var_i  <- var_i * (1 - x_i^2 var_i / S^2 * w(t)),   v = phi/Phi,  w = v (v + t)

The state is an immutable record and every step is a pure function
``(state, data) -> state``; randomness is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray, IntArray
from memberlab.bayes._sparse import SparseRows

__all__ = [
    "ProbitState",
    "decay",
    "from_arrays",
    "grow",
    "init",
    "likelihood_messages",
    "predict_proba",
    "sample_weights",
    "set_prior",
    "update",
    "update_one",
    "update_parallel",
]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Variance never falls below this fraction of its prior: keeps the state finite after
# millions of updates on one weight (w(t) < 1 in exact arithmetic, not in floating point).
_MIN_VAR_FRACTION = 1e-12


@dataclass(frozen=True, slots=True)
class ProbitState:
    """Posterior over probit weights: one independent Gaussian per feature.

    Attributes
    ----------
    mean, var : ndarray of shape (n_features,)
        Posterior mean and variance of each weight.
    prior_mean, prior_var : ndarray of shape (n_features,)
        The prior each weight started from; :func:`decay` relaxes toward it.
    noise : float
        Scale of the probit link (beta in AdPredictor).
    """

    mean: FloatArray
    var: FloatArray
    prior_mean: FloatArray
    prior_var: FloatArray
    noise: float = 1.0

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])


def from_arrays(arrays: Mapping[str, Any], noise: float) -> ProbitState:
    """A state from its four arrays (``mean``, ``var``, ``prior_mean``, ``prior_var``),
    as snapshots store them."""
    a = {
        k: np.asarray(arrays[k], dtype=np.float64)
        for k in ("mean", "var", "prior_mean", "prior_var")
    }
    return ProbitState(a["mean"], a["var"], a["prior_mean"], a["prior_var"], float(noise))


def _as_vec(value: float | FloatArray, n: int, name: str) -> FloatArray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    if not np.all(np.isfinite(arr)):
        raise DataValidationError(f"{name} must be finite.")
    return arr


def init(
    n_features: int,
    *,
    prior_mean: float | FloatArray = 0.0,
    prior_var: float | FloatArray = 1.0,
    noise: float = 1.0,
) -> ProbitState:
    """A state at its prior.

    >>> s = init(3, prior_var=0.5)
    >>> s.var.tolist()
    [0.5, 0.5, 0.5]
    """
    if n_features < 0:
        raise DataValidationError(f"n_features == {n_features}, must be >= 0.")
    if not noise > 0 or not math.isfinite(noise):
        raise DataValidationError(f"noise == {noise}, must be a positive finite number.")
    pm = _as_vec(prior_mean, n_features, "prior_mean")
    pv = _as_vec(prior_var, n_features, "prior_var")
    if np.any(pv <= 0):
        raise DataValidationError("prior_var must be > 0 for every feature.")
    return ProbitState(mean=pm.copy(), var=pv.copy(), prior_mean=pm, prior_var=pv, noise=noise)


def grow(
    state: ProbitState,
    n_new: int,
    *,
    prior_mean: float | FloatArray = 0.0,
    prior_var: float | FloatArray = 1.0,
) -> ProbitState:
    """Append ``n_new`` features, each starting at its (group's) prior."""
    if n_new < 0:
        raise DataValidationError(f"n_new == {n_new}, must be >= 0.")
    extra = init(n_new, prior_mean=prior_mean, prior_var=prior_var, noise=state.noise)
    return ProbitState(
        mean=np.concatenate([state.mean, extra.mean]),
        var=np.concatenate([state.var, extra.var]),
        prior_mean=np.concatenate([state.prior_mean, extra.prior_mean]),
        prior_var=np.concatenate([state.prior_var, extra.prior_var]),
        noise=state.noise,
    )


def set_prior(
    state: ProbitState,
    prior_mean: FloatArray,
    prior_var: FloatArray,
    *,
    reset: bool = True,
) -> ProbitState:
    """Replace the prior (e.g. after an empirical-Bayes refit).

    With ``reset=True`` the posterior is reset to the new prior, ready for a replay of
    the log in hindsight.
    """
    pm = _as_vec(prior_mean, state.n_features, "prior_mean")
    pv = _as_vec(prior_var, state.n_features, "prior_var")
    if np.any(pv <= 0):
        raise DataValidationError("prior_var must be > 0 for every feature.")
    if reset:
        return ProbitState(pm.copy(), pv.copy(), pm, pv, state.noise)
    return replace(state, prior_mean=pm, prior_var=pv)


def _v_w(t: float) -> tuple[float, float]:
    """v(t) = phi(t)/Phi(t) and w(t) = v (v + t), stable for any finite t."""
    if t > -30.0:
        cdf = 0.5 * math.erfc(-t / _SQRT2)
        v = _INV_SQRT2PI * math.exp(-0.5 * t * t) / cdf
    else:  # Mills ratio asymptotics: Phi underflows long before v misbehaves
        v = -t - 1.0 / t + 2.0 / t**3
    w = v * (v + t)
    return v, min(max(w, 0.0), 1.0)


def _v_w_vec(t: FloatArray) -> tuple[FloatArray, FloatArray]:
    logpdf = -0.5 * t * t - 0.5 * math.log(2.0 * math.pi)
    v = np.exp(logpdf - special.log_ndtr(t))
    w = np.clip(v * (v + t), 0.0, 1.0)
    return v, w


def _check_label(y: object) -> float:
    if y in (0, 1, True, False):
        return 1.0 if y else -1.0
    raise DataValidationError(f"label == {y!r}, must be 0 or 1.")


def _update_inplace(
    mean: FloatArray,
    var: FloatArray,
    floor: FloatArray,
    noise2: float,
    idx: IntArray,
    x: FloatArray,
    s: float,
) -> None:
    var_i = var[idx]
    x2v = x * x * var_i
    total = noise2 + float(x2v.sum())
    sd = math.sqrt(total)
    t = s * float(np.dot(x, mean[idx])) / sd
    v, w = _v_w(t)
    mean[idx] += (s * v / sd) * x * var_i
    var[idx] = np.maximum(var_i * (1.0 - x2v * (w / total)), floor[idx])


def update_one(
    state: ProbitState, indices: IntArray, values: FloatArray | None, y: int | bool
) -> ProbitState:
    """Update on one row given by its active ``indices`` (and ``values``, default 1)."""
    idx = np.asarray(indices, dtype=np.int64)
    x = np.ones(idx.shape[0]) if values is None else np.asarray(values, dtype=np.float64)
    if x.shape != idx.shape:
        raise DataValidationError("values must have the shape of indices.")
    if idx.shape[0] and (idx.min() < 0 or idx.max() >= state.n_features):
        raise DataValidationError(
            f"feature index out of range [0, {state.n_features}): {idx.min()}..{idx.max()}."
        )
    if np.unique(idx).shape[0] != idx.shape[0]:
        raise DataValidationError("indices of one row must be distinct.")
    mean = state.mean.copy()
    var = state.var.copy()
    _update_inplace(
        mean, var, state.prior_var * _MIN_VAR_FRACTION, state.noise**2, idx, x, _check_label(y)
    )
    return replace(state, mean=mean, var=var)


def _check_rows(state: ProbitState, rows: SparseRows, y: IntArray) -> FloatArray:
    yy = np.asarray(y)
    if yy.shape != (rows.n_rows,):
        raise DataValidationError(f"y has shape {yy.shape}, must be ({rows.n_rows},).")
    if not np.all((yy == 0) | (yy == 1)):
        raise DataValidationError("labels must be 0 or 1.")
    if rows.indices.shape[0] and (rows.indices.min() < 0 or rows.max_index() >= state.n_features):
        raise DataValidationError(f"feature index out of range [0, {state.n_features}).")
    if not np.all(np.isfinite(rows.data)):
        raise DataValidationError("feature values must be finite.")
    return np.where(yy == 1, 1.0, -1.0)


def update(state: ProbitState, rows: SparseRows, y: IntArray) -> ProbitState:
    """Sequential ADF over the rows in order: identical to repeated :func:`update_one`.

    Parameters
    ----------
    rows : SparseRows with n_rows rows
    y : ndarray of shape (n_rows,), values in {0, 1}
    """
    signs = _check_rows(state, rows, y)
    mean = state.mean.copy()
    var = state.var.copy()
    floor = state.prior_var * _MIN_VAR_FRACTION
    noise2 = state.noise**2
    ptr, ind, dat = rows.indptr, rows.indices, rows.data
    for i in range(rows.n_rows):
        a, b = ptr[i], ptr[i + 1]
        _update_inplace(mean, var, floor, noise2, ind[a:b], dat[a:b], float(signs[i]))
    return replace(state, mean=mean, var=var)


def update_parallel(state: ProbitState, rows: SparseRows, y: IntArray) -> ProbitState:
    """One vectorised ADF step for a whole batch.

    Each row's Gaussian message is computed against the same (pre-batch) state and the
    messages are multiplied in natural parameters. Equals :func:`update` for a batch of
    one; for large batches it is much faster and close to the sequential result when each
    weight sees a small share of the batch.
    """
    signs = _check_rows(state, rows, y)
    if rows.n_rows == 0:
        return state
    ind, dat = rows.indices, rows.data
    row_of = np.repeat(np.arange(rows.n_rows), np.diff(rows.indptr))
    var_i = state.var[ind]
    x2v = dat * dat * var_i
    total = state.noise**2 + np.bincount(row_of, weights=x2v, minlength=rows.n_rows)
    sd = np.sqrt(total)
    t = signs * rows.dot(state.mean) / sd
    v, w = _v_w_vec(t)
    # Per-entry posterior moments as if this row were the only one in the batch.
    new_mean = state.mean[ind] + (signs * v / sd)[row_of] * dat * var_i
    new_var = np.maximum(var_i * (1.0 - x2v * (w / total)[row_of]), 1e-300)
    # Message = new / old in natural parameters; accumulate per feature.
    d_prec = 1.0 / new_var - 1.0 / var_i
    d_pm = new_mean / new_var - state.mean[ind] / var_i
    n = state.n_features
    prec = 1.0 / state.var + np.bincount(ind, weights=d_prec, minlength=n)
    pm = state.mean / state.var + np.bincount(ind, weights=d_pm, minlength=n)
    var = np.maximum(1.0 / prec, state.prior_var * _MIN_VAR_FRACTION)
    return replace(state, mean=pm * var, var=var)


def predict_proba(state: ProbitState, rows: SparseRows) -> FloatArray:
    """Posterior predictive click probability of each row (no exploration noise).

    Returns
    -------
    ndarray of shape (n_rows,)
    """
    mu = rows.dot(state.mean)
    s2 = state.noise**2 + _segment_var(rows, state.var)
    return np.asarray(special.ndtr(mu / np.sqrt(s2)), dtype=np.float64)


def _segment_var(rows: SparseRows, var: FloatArray) -> FloatArray:
    sq = SparseRows(rows.indptr, rows.indices, rows.data * rows.data)
    return sq.dot(var)


def sample_weights(
    state: ProbitState, rng: np.random.Generator, n_draws: int | None = None
) -> FloatArray:
    """Draw weights from the posterior: shape (n_features,) or (n_draws, n_features)."""
    shape = (state.n_features,) if n_draws is None else (n_draws, state.n_features)
    return state.mean + np.sqrt(state.var) * rng.standard_normal(shape)


def decay(state: ProbitState, rate: float) -> ProbitState:
    """Relax the posterior toward the prior by ``rate`` in [0, 1].

    In natural parameters: new = (1 - rate) * posterior + rate * prior, so ``rate=0``
    changes nothing, ``rate=1`` returns the prior, and the variance can only grow
    (toward the prior variance) when the posterior is tighter than the prior.
    """
    if not 0.0 <= rate <= 1.0:
        raise DataValidationError(f"rate == {rate}, must be in [0, 1].")
    prec = (1.0 - rate) / state.var + rate / state.prior_var
    pm = (1.0 - rate) * state.mean / state.var + rate * state.prior_mean / state.prior_var
    var = 1.0 / prec
    return replace(state, mean=pm * var, var=var)


def likelihood_messages(state: ProbitState) -> tuple[FloatArray, FloatArray]:
    """What the data said about each weight, with the prior divided out.

    Returns the Gaussian message's precision and mean (mean is 0 where the precision is
    0, i.e. where a weight has seen no data). Used by empirical-Bayes refits, which must
    not double count the prior the model was trained under.

    Returns
    -------
    precision, mean : ndarrays of shape (n_features,)
    """
    prec = np.maximum(1.0 / state.var - 1.0 / state.prior_var, 0.0)
    pm = state.mean / state.var - state.prior_mean / state.prior_var
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(prec > 1e-12, pm / np.where(prec > 1e-12, prec, 1.0), 0.0)
    return prec, mean
