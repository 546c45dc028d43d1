"""Empirical-Bayes meta-priors: one prior N(mu_g, sigma_g^2) per feature group.

Two estimators (Nabi et al., 2022, "Bayesian Meta-Prior Learning Using Empirical Bayes"):

- **naive**: the mean and variance of the posterior means within a group. When weights
  have little data their posterior means are noisy (under a wide prior) or shrunk (under
  a narrow one), so the variance is over- or under-stated;
- **deconvolved**: treat each weight's likelihood message (its posterior with the prior
  it was trained under divided out, see :func:`memberlab.bayes.probit.likelihood_messages`)
  as a noisy measurement ``m_i ~ N(mu_g, sigma_g^2 + 1/prec_i)`` and fit ``mu_g`` and
  ``sigma_g^2`` by maximum likelihood (heteroscedastic normal-normal model). The
  measurement noise ``1/prec_i`` is deconvolved, so the estimate stays honest when
  weights have little data.

Fit from a wide-prior shadow model or from likelihood messages, never from posterior
means of a model trained under the prior being estimated (that double counts the prior).

Identifiability: with one-hot coding a common shift of one group's weights can move into
the intercept (or another group) without changing any prediction, so the group *means*
are not identified from the data. :func:`fit_group_priors` therefore estimates each
group's mean only as a nuisance parameter (profiled out, so the shift does not inflate
the variance) and callers usually pin the prior means at 0, letting a bias feature with a
fixed wide prior carry the overall level (see ``memberlab.callouts``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import special

from memberlab._errors import ConvergenceWarning, DataValidationError
from memberlab._typing import FloatArray, IntArray
from memberlab.bayes import probit
from memberlab.bayes._sparse import SparseRows
from memberlab.bayes.groups import GroupPrior
from memberlab.bayes.probit import ProbitState, likelihood_messages

__all__ = [
    "GroupFit",
    "MetaPriorFit",
    "deconvolved_prior",
    "empirical_bayes_refit",
    "fit_group_priors",
    "laplace_messages",
    "naive_prior",
    "prior_arrays",
    "refine_mean",
]

Method = Literal["naive", "deconvolved"]


@dataclass(frozen=True, slots=True)
class GroupFit:
    """Estimate of one group's prior.

    Attributes
    ----------
    mean, var : float
        Estimated N(mean, var).
    n_weights : int
        Weights that contributed (for the deconvolved estimator: with data).
    converged : bool
        False when the variance hit a bound or the optimiser failed.
    loglik : float
        Maximised log-likelihood (NaN for the naive estimator).
    """

    mean: float
    var: float
    n_weights: int
    converged: bool = True
    loglik: float = float("nan")


@dataclass(frozen=True, slots=True)
class MetaPriorFit:
    """Per-group results of :func:`fit_group_priors`."""

    method: str
    groups: dict[str, GroupFit] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return all(g.converged for g in self.groups.values())

    def priors(
        self, *, pin_mean: float | None = 0.0, min_weights: int = 1
    ) -> dict[str, GroupPrior]:
        """Group priors to train under; ``pin_mean`` replaces every estimated mean."""
        out: dict[str, GroupPrior] = {}
        for name, g in self.groups.items():
            if g.n_weights >= min_weights:
                out[name] = GroupPrior(g.mean if pin_mean is None else pin_mean, g.var)
        return out

    def summary(self) -> str:
        """A small text table of the estimates."""
        lines = [f"meta-prior ({self.method})", f"{'group':<28}{'n':>7}{'mean':>10}{'var':>11}"]
        for name, g in self.groups.items():
            flag = "" if g.converged else "  (at bound)"
            lines.append(f"{name:<28}{g.n_weights:>7}{g.mean:>10.4f}{g.var:>11.5f}{flag}")
        return "\n".join(lines)


def naive_prior(post_mean: FloatArray) -> GroupFit:
    """Mean and (population) variance of the posterior means of one group.

    Parameters
    ----------
    post_mean : ndarray of shape (n_weights,)
    """
    m = np.asarray(post_mean, dtype=np.float64)
    if m.size == 0:
        return GroupFit(0.0, float("nan"), 0, converged=False)
    var = float(m.var()) if m.size > 1 else float("nan")
    return GroupFit(float(m.mean()), var, int(m.size), converged=bool(m.size > 1 and var > 0))


def _profile(log_tau2: float, m: FloatArray, s2: FloatArray, mu: float | None) -> float:
    """Negative profile log-likelihood of log(sigma^2) (mean profiled unless fixed)."""
    tot = math.exp(log_tau2) + s2
    w = 1.0 / tot
    mu_hat = float(np.dot(w, m) / w.sum()) if mu is None else mu
    r = m - mu_hat
    return 0.5 * float(np.sum(np.log(tot) + r * r * w))


def deconvolved_prior(
    msg_mean: FloatArray,
    msg_prec: FloatArray,
    *,
    fixed_mean: float | None = None,
    min_var: float = 1e-6,
    max_var: float = 100.0,
    upper_quantile: float | None = None,
) -> GroupFit:
    """ML fit of ``m_i ~ N(mu, sigma^2 + 1/prec_i)`` over the weights of one group.

    With ``upper_quantile=q`` the returned variance is instead the upper end of a
    one-sided profile-likelihood interval at level ``q`` (deviance ``ndtri(q)^2`` above
    the maximum). With few weights the ML variance often sits at zero; a policy that
    explores with the prior should not trust that, and the upper bound falls to the ML
    estimate as data accumulate.

    Parameters
    ----------
    msg_mean, msg_prec : ndarray of shape (n_weights,)
        Likelihood messages; weights with ``prec == 0`` (no data) are ignored.
    fixed_mean : float, optional
        Pin ``mu`` instead of estimating it.
    min_var, max_var : float
        Search bounds on ``sigma^2``; hitting one sets ``converged=False``.
    upper_quantile : float in (0.5, 1), optional
        Return the profile-likelihood upper bound at this level instead of the MLE.

    Returns
    -------
    GroupFit
    """
    if upper_quantile is not None and not 0.5 < upper_quantile < 1:
        raise DataValidationError(f"upper_quantile == {upper_quantile}, must be in (0.5, 1).")
    m = np.asarray(msg_mean, dtype=np.float64)
    p = np.asarray(msg_prec, dtype=np.float64)
    if m.shape != p.shape or m.ndim != 1:
        raise DataValidationError(
            f"msg_mean has shape {m.shape}, msg_prec {p.shape}; both must be (n_weights,)."
        )
    if not 0 < min_var < max_var:
        raise DataValidationError(
            f"min_var == {min_var}, max_var == {max_var}; need 0 < min_var < max_var."
        )
    keep = (p > 1e-12) & np.isfinite(p) & np.isfinite(m)
    m, s2 = m[keep], 1.0 / p[keep]
    n = int(m.size)
    if n < 2:
        return GroupFit(0.0 if fixed_mean is None else fixed_mean, float("nan"), n, False)
    from scipy import optimize  # lazily: a serving process never refits

    lo, hi = math.log(min_var), math.log(max_var)
    grid = np.linspace(lo, hi, 61)
    vals = np.array([_profile(g, m, s2, fixed_mean) for g in grid])
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = optimize.minimize_scalar(
        _profile,
        bounds=(a, b),
        args=(m, s2, fixed_mean),
        method="bounded",
        options={"xatol": 1e-7},
    )
    log_tau2 = float(res.x) if res.success and res.fun <= vals[i] else float(grid[i])
    at_bound = log_tau2 - lo < 1e-3 or hi - log_tau2 < 1e-3
    if upper_quantile is not None:
        f0 = _profile(log_tau2, m, s2, fixed_mean)
        half_dev = 0.5 * float(special.ndtri(upper_quantile)) ** 2

        def excess(x: float) -> float:
            return _profile(x, m, s2, fixed_mean) - f0 - half_dev

        if excess(hi) <= 0:
            log_tau2 = hi
        elif hi > log_tau2:
            log_tau2 = float(optimize.brentq(excess, log_tau2, hi, xtol=1e-6))
    tau2 = math.exp(log_tau2)
    w = 1.0 / (tau2 + s2)
    mu = float(np.dot(w, m) / w.sum()) if fixed_mean is None else float(fixed_mean)
    return GroupFit(
        mu,
        tau2,
        n,
        converged=bool(res.success) and not at_bound,
        loglik=-_profile(log_tau2, m, s2, fixed_mean),
    )


def fit_group_priors(
    state: ProbitState,
    group_ids: IntArray,
    group_names: Sequence[str],
    *,
    method: Method = "deconvolved",
    exclude: Sequence[str] = (),
    fixed_means: Mapping[str, float] | None = None,
    min_var: float = 1e-6,
    max_var: float = 100.0,
    messages: tuple[FloatArray, FloatArray] | None = None,
    upper_quantile: float | None = None,
) -> MetaPriorFit:
    """Estimate a prior for every feature group of a trained probit state.

    Parameters
    ----------
    state : ProbitState
        For ``"deconvolved"``: any state (its own prior is divided out, see
        :func:`~memberlab.bayes.probit.likelihood_messages`), unless ``messages`` are
        given. For ``"naive"``: a wide-prior shadow model (its posterior means are used
        as they are).
    group_ids : ndarray of shape (n_features,)
        Group of each feature, indices into ``group_names``.
    group_names : sequence of str
    method : {"naive", "deconvolved"}
    exclude : sequence of str
        Groups not to fit (e.g. the bias).
    fixed_means : mapping of group to float, optional
        Pin these groups' means during the fit (deconvolved only).
    messages : (precision, mean), optional
        Likelihood messages to use instead of the state's own, e.g. from
        :func:`laplace_messages`; arrays of shape (n_features,).
    upper_quantile : float, optional
        Deconvolved only: report each variance's profile-likelihood upper bound at this
        level instead of the MLE (see :func:`deconvolved_prior`).

    Returns
    -------
    MetaPriorFit
    """
    gids = np.asarray(group_ids, dtype=np.int64)
    if gids.shape != (state.n_features,):
        raise DataValidationError(
            f"group_ids has shape {gids.shape}, must be ({state.n_features},)."
        )
    if method not in ("naive", "deconvolved"):
        raise DataValidationError(f"method == {method!r}, must be 'naive' or 'deconvolved'.")
    fixed = dict(fixed_means or {})
    prec, mmean = likelihood_messages(state) if messages is None else messages
    if prec.shape != (state.n_features,) or mmean.shape != (state.n_features,):
        raise DataValidationError(f"messages must have shape ({state.n_features},).")
    out: dict[str, GroupFit] = {}
    for g, name in enumerate(group_names):
        if name in exclude:
            continue
        sel = gids == g
        if not np.any(sel):
            continue
        if method == "naive":
            # Only weights that saw data: untouched weights sit exactly at the prior.
            seen = sel & (prec > 1e-12)
            fit = naive_prior(state.mean[seen])
        else:
            fit = deconvolved_prior(
                mmean[sel],
                prec[sel],
                fixed_mean=fixed.get(name),
                min_var=min_var,
                max_var=max_var,
                upper_quantile=upper_quantile,
            )
        out[name] = fit
    bad = [n for n, f in out.items() if not f.converged]
    if bad:
        warnings.warn(
            f"meta-prior fit did not converge for groups {bad} (too few weights with data, "
            "or the variance at a search bound).",
            ConvergenceWarning,
            stacklevel=2,
        )
    return MetaPriorFit(method=method, groups=out)


def refine_mean(
    state: ProbitState,
    rows: SparseRows,
    y: IntArray,
    group_ids: IntArray,
    *,
    n_sweeps: int = 8,
) -> ProbitState:
    """Move the posterior mean to the MAP under the state's prior by block Newton steps.

    Single-pass ADF assigns credit in arrival order: weights seen while the bias is still
    unlearnt absorb part of the overall level, and how much depends on the prior. A few
    sweeps of block-coordinate Newton (one feature group at a time; within a one-hot
    group the weights do not share rows) on ``log p(y | w) + log N(w; prior)`` remove
    that order dependence. Variances are left as they are.

    Parameters
    ----------
    state : ProbitState
    rows : SparseRows with n_rows rows
    y : ndarray of shape (n_rows,)
    group_ids : ndarray of shape (n_features,)
    n_sweeps : int
        Passes over all groups (>= 0).
    """
    if n_sweeps < 0:
        raise DataValidationError(f"n_sweeps == {n_sweeps}, must be >= 0.")
    gids = np.asarray(group_ids, dtype=np.int64)
    if gids.shape != (state.n_features,):
        raise DataValidationError(
            f"group_ids has shape {gids.shape}, must be ({state.n_features},)."
        )
    if rows.n_rows == 0 or state.n_features == 0:
        return state
    s = np.where(np.asarray(y) > 0, 1.0, -1.0)
    row_of = np.repeat(np.arange(rows.n_rows), np.diff(rows.indptr))
    x = rows.data
    n = state.n_features
    mean = state.mean.copy()
    ppm, ppv = state.prior_mean, state.prior_var
    z = rows.dot(mean)
    groups = np.unique(gids)
    feat_group = gids[rows.indices]
    for _ in range(n_sweeps):
        for g in groups:
            ent = feat_group == g
            if not np.any(ent):
                continue
            t = s * z / state.noise
            logpdf = -0.5 * t * t - 0.5 * math.log(2.0 * math.pi)
            v = np.exp(logpdf - special.log_ndtr(t))
            w = np.clip(v * (v + t), 1e-12, 1.0)
            idx = rows.indices[ent]
            r = row_of[ent]
            xe = x[ent]
            grad = np.bincount(idx, weights=xe * (s * v)[r] / state.noise, minlength=n)
            hess = np.bincount(idx, weights=xe * xe * w[r] / state.noise**2, minlength=n)
            sel = gids == g
            step = np.zeros(n)
            step[sel] = (grad[sel] - (mean[sel] - ppm[sel]) / ppv[sel]) / (
                hess[sel] + 1.0 / ppv[sel]
            )
            np.clip(step, -1.0, 1.0, out=step)
            mean += step
            z += np.bincount(r, weights=xe * step[idx], minlength=rows.n_rows)
    return ProbitState(mean, state.var.copy(), ppm, ppv, state.noise)


def laplace_messages(
    state: ProbitState, rows: SparseRows, y: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Per-weight Gaussian likelihood messages by a Laplace step at the posterior mean.

    For each weight i, the log-likelihood of the rows that contain it, with every other
    weight held at its posterior mean, is expanded to second order at ``mean_i``:
    precision = sum of ``x_ri^2 w(t_r) / noise^2`` and message mean = ``mean_i +
    gradient / precision``, where ``t_r = s_r (x_r . mean) / noise``. Unlike ADF's own
    messages (:func:`~memberlab.bayes.probit.likelihood_messages`), these do not carry
    the other weights' prior uncertainty into each row's noise, so they measure one
    weight at a time as the normal-normal model assumes; they depend on the prior only
    through the point where they are taken.

    Parameters
    ----------
    state : ProbitState
        Usually a wide-prior shadow model trained on ``rows``.
    rows : SparseRows with n_rows rows
    y : ndarray of shape (n_rows,), values in {0, 1}

    Returns
    -------
    precision, mean : ndarrays of shape (n_features,)
    """
    yy = np.asarray(y)
    if yy.shape != (rows.n_rows,):
        raise DataValidationError(f"y has shape {yy.shape}, must be ({rows.n_rows},).")
    n = state.n_features
    if rows.n_rows == 0:
        return np.zeros(n), np.zeros(n)
    s = np.where(yy > 0, 1.0, -1.0)
    t = s * rows.dot(state.mean) / state.noise
    logpdf = -0.5 * t * t - 0.5 * math.log(2.0 * math.pi)
    v = np.exp(logpdf - special.log_ndtr(t))
    w = np.clip(v * (v + t), 1e-12, 1.0)
    row_of = np.repeat(np.arange(rows.n_rows), np.diff(rows.indptr))
    x = rows.data
    grad = np.bincount(rows.indices, weights=x * (s * v / state.noise)[row_of], minlength=n)
    prec = np.bincount(rows.indices, weights=x * x * (w / state.noise**2)[row_of], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(prec > 1e-12, state.mean + grad / np.where(prec > 0, prec, 1.0), 0.0)
    return np.asarray(prec, dtype=np.float64), np.asarray(mean, dtype=np.float64)


def prior_arrays(
    group_ids: IntArray,
    group_names: Sequence[str],
    priors: Mapping[str, GroupPrior],
    default: GroupPrior,
) -> tuple[FloatArray, FloatArray]:
    """Per-feature prior mean and variance from group priors.

    Returns
    -------
    prior_mean, prior_var : ndarrays of shape (n_features,)
    """
    gm = np.array([priors.get(n, default).mean for n in group_names], dtype=np.float64)
    gv = np.array([priors.get(n, default).var for n in group_names], dtype=np.float64)
    gids = np.asarray(group_ids, dtype=np.int64)
    if gids.size == 0:
        return np.zeros(0), np.zeros(0)
    return gm[gids], gv[gids]


def empirical_bayes_refit(
    live: ProbitState,
    rows: SparseRows,
    y: IntArray,
    group_ids: IntArray,
    group_names: Sequence[str],
    *,
    method: Method = "deconvolved",
    source: Literal["shadow", "messages"] = "shadow",
    fixed_groups: Sequence[str] = ("bias",),
    shadow_prior_var: float = 0.1,
    shadow_fixed_var: float = 10.0,
    shadow_sweeps: int = 8,
    prior_quantile: float | None = None,
    min_weights: int = 3,
    min_var: float = 1e-4,
) -> tuple[MetaPriorFit, dict[str, GroupPrior]]:
    """The one meta-prior refit rule every policy kind uses.

    The group priors are estimated either from a wide-prior *shadow* model trained on
    the logged ``rows``/``y`` (``source="shadow"``: prior ``N(0, shadow_prior_var)`` for
    every weight, ``N(0, shadow_fixed_var)`` for the ``fixed_groups``; its mean moved to
    the MAP by ``shadow_sweeps`` block-Newton sweeps, then Laplace likelihood messages
    taken there) or from the ``live`` model's own likelihood messages (``source=
    "messages"``, deconvolved only: the live prior is divided out). Never from the live
    posterior means, which were trained under the prior being estimated.

    Group means are pinned at 0 (the ``fixed_groups``, usually the bias with its fixed
    prior, carry the overall level: with one-hot coding group means and the bias are
    confounded); only variances are refit. Groups with fewer than ``min_weights``
    weights with data, or a non-finite estimate, get no new prior.

    Parameters
    ----------
    live : ProbitState
        The serving model (read only; used by ``source="messages"``).
    rows : SparseRows with n_rows rows over ``live.n_features`` features
    y : ndarray of shape (n_rows,), values in {0, 1}
    group_ids : ndarray of shape (n_features,)
    group_names : sequence of str

    Returns
    -------
    fit : MetaPriorFit
    priors : dict of group name to GroupPrior
        The new priors (mean 0) of the groups that were refit.
    """
    if method not in ("deconvolved", "naive"):
        raise DataValidationError(f"method == {method!r}, must be 'deconvolved' or 'naive'.")
    if source not in ("shadow", "messages"):
        raise DataValidationError(f"source == {source!r}, must be 'shadow' or 'messages'.")
    if source == "messages" and method == "naive":
        raise DataValidationError(
            "method == 'naive' needs source == 'shadow': the naive estimator reads "
            "posterior means, which must come from a wide-prior model."
        )
    gids = np.asarray(group_ids, dtype=np.int64)
    messages = None
    if source == "shadow":
        sv = np.full(live.n_features, float(shadow_prior_var))
        for name in fixed_groups:
            if name in group_names:
                sv[gids == list(group_names).index(name)] = shadow_fixed_var
        fit_state = probit.init(live.n_features, prior_var=sv, noise=live.noise)
        if rows.n_rows:
            fit_state = probit.update(fit_state, rows, y)
            fit_state = refine_mean(fit_state, rows, y, gids, n_sweeps=shadow_sweeps)
            messages = laplace_messages(fit_state, rows, y)
    else:
        fit_state = live
    fit = fit_group_priors(
        fit_state,
        gids,
        group_names,
        method=method,
        exclude=list(fixed_groups),
        min_var=min_var,
        messages=messages,
        upper_quantile=prior_quantile if method == "deconvolved" else None,
    )
    new = {
        name: GroupPrior(0.0, g.var)
        for name, g in fit.groups.items()
        if g.n_weights >= min_weights and math.isfinite(g.var) and g.var > 0
    }
    return fit, new
