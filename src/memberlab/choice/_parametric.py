"""Parametric baselines on panels: CCP (Hotz-Miller) and NFXP (Rust).

Both take a linear reward ``r(s, a) = features[s, a] @ theta`` with the anchor's
features zero (its reward is 0). By default, :func:`linear_features` gives each
non-anchor action its own intercept and slopes on the state columns (categorical columns
one-hot coded with the first level dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray
from memberlab.choice._nfxp_core import NFXPProblem, maximize_bhhh
from memberlab.choice._panel import Panel, check_dense_size, estimate_transitions
from memberlab.choice._pqr import (
    _check_hyper,
    _frequency_policy,
    _transition_loglik,
    fit_results,
)
from memberlab.choice._results import ChoiceResults
from memberlab.choice._solve import policy_transition, small_blas, solve_values

__all__ = ["CCP", "NFXP", "linear_features", "nfxp_cost"]

logger = logging.getLogger(__name__)

FeatureFn = Callable[[Panel], tuple[FloatArray, list[str]]]


def linear_features(panel: Panel, anchor: Any) -> tuple[FloatArray, list[str]]:
    """Default reward features: per non-anchor action, an intercept and state slopes.

    Rewards in states with a single feasible action (not identified) are pinned at 0, and
    columns that are constant or collinear on the feasible pairs are dropped.

    Returns
    -------
    features : ndarray of shape (n_states, n_actions, n_params)
        Zero for the anchor and for infeasible pairs.
    names : list of str
        ``"<action>:const"``, ``"<action>:<column>"`` (``"<column>=<level>"`` for
        categorical columns).
    """
    a0 = panel.action_index(anchor)
    cols: list[np.ndarray] = []
    names: list[str] = []
    for c in panel.state_cols:
        col = panel.states[c]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            cols.append(col.to_numpy(dtype=float))
            names.append(str(c))
        else:
            dummies = pd.get_dummies(col.astype(str), drop_first=True)
            for lev in dummies.columns:
                cols.append(dummies[lev].to_numpy(dtype=float))
                names.append(f"{c}={lev}")
    base = (
        np.column_stack([np.ones(panel.n_states), *cols]) if cols else np.ones((panel.n_states, 1))
    )
    base_names = ["const", *names]
    n_s, n_a = panel.n_states, panel.n_actions
    k = base.shape[1]
    # rewards in states with a single feasible action are not identified: pinned at 0
    choice = panel.feasible.sum(axis=1) > 1
    others = [a for a in range(n_a) if a != a0]
    feats = np.zeros((n_s, n_a, k * len(others)))
    out_names: list[str] = []
    for j, a in enumerate(others):
        use = (panel.feasible[:, a] & choice)[:, None]
        feats[:, a, j * k : (j + 1) * k] = base * use
        out_names += [f"{panel.actions[a]}:{n}" for n in base_names]
    # keep a column only if it adds to the rank (drops constant and collinear columns)
    flat = feats[panel.feasible]
    keep: list[int] = []
    for i in range(flat.shape[1]):
        trial = flat[:, [*keep, i]]
        if np.linalg.matrix_rank(trial) > len(keep):
            keep.append(i)
    return feats[:, :, keep], [out_names[i] for i in keep]


def _features(
    panel: Panel, anchor: Any, features: FeatureFn | None
) -> tuple[FloatArray, list[str]]:
    if features is None:
        return linear_features(panel, anchor)
    feats, names = features(panel)
    feats = np.asarray(feats, dtype=float)
    if feats.ndim != 3 or feats.shape[:2] != (panel.n_states, panel.n_actions):
        raise DataValidationError(
            f"features(panel) has shape {feats.shape}, must be "
            f"({panel.n_states}, {panel.n_actions}, n_params)."
        )
    if len(names) != feats.shape[2]:
        raise DataValidationError(
            f"features(panel) gave {len(names)} names for {feats.shape[2]} parameters."
        )
    return feats, list(names)


def _aggregate(panel: Panel) -> tuple[np.ndarray, np.ndarray, FloatArray]:
    counts = panel.counts()
    s, a = np.nonzero(counts)
    return s.astype(np.int64), a.astype(np.int64), counts[s, a]


def _logit_newton(
    z: FloatArray, c: FloatArray, feasible: np.ndarray, counts: FloatArray, theta0: FloatArray
) -> tuple[FloatArray, FloatArray, bool]:
    """Maximise sum_sa n_sa log softmax_a(z_sa theta + c_sa) by Newton.

    Returns ``(theta, information, converged)``; the information is ``-Hessian``.
    """
    theta = theta0.copy()
    n_s = counts.sum(axis=1)

    def parts(th: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        v = np.where(feasible, z @ th + c, -np.inf)
        vmax = v.max(axis=1, keepdims=True)
        e = np.exp(v - vmax)
        p = e / e.sum(axis=1, keepdims=True)
        logp = np.where(feasible, v - vmax - np.log(e.sum(axis=1, keepdims=True)), 0.0)
        ll = float((counts * logp).sum())
        zbar = np.einsum("sa,sak->sk", p, z)
        g = np.einsum("sa,sak->k", counts, z) - n_s @ zbar
        dz = z - zbar[:, None, :]
        h = -np.einsum("s,sa,sak,sal->kl", n_s, p, dz, dz)
        return ll, g, h

    ll, g, h = parts(theta)
    converged = False
    for _ in range(100):
        try:
            step = scipy.linalg.solve(-h, g, assume_a="pos")
        except (scipy.linalg.LinAlgError, ValueError):
            step = np.linalg.lstsq(-h, g, rcond=None)[0]
        if float(g @ step) < 1e-12:
            converged = True
            break
        lam = 1.0
        for _ in range(40):
            cand = theta + lam * step
            ll_c, g_c, h_c = parts(cand)
            if ll_c >= ll - 1e-12 * abs(ll):
                theta, ll, g, h = cand, ll_c, g_c, h_c
                break
            lam *= 0.5
        else:
            break
    return theta, -h, converged


def _covariance(
    information: FloatArray, names: list[str]
) -> tuple[FloatArray, FloatArray, list[str]]:
    """Covariance and standard errors from an information matrix, singularity explained.

    Parameters in the null space of the information matrix (not identified by the data:
    collinear with others, or never varying where the action is chosen) get a standard
    error of NaN, and the reason is returned.
    """
    info = 0.5 * (information + information.T)
    k = info.shape[0]
    reasons: list[str] = []
    if k == 0:
        return np.zeros((0, 0)), np.zeros(0), reasons
    if not np.isfinite(info).all():
        reasons.append("the information matrix is not finite")
        return np.full((k, k), np.nan), np.full(k, np.nan), reasons
    evals, evecs = np.linalg.eigh(info)
    tol = max(float(np.abs(evals).max()), 1e-300) * 1e-10
    null = evals <= tol
    cov = np.asarray(np.linalg.pinv(info, rcond=1e-10, hermitian=True), dtype=float)
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if null.any():
        involved = np.abs(evecs[:, null]).max(axis=1) > 1e-3
        se[involved] = np.nan
        bad = [names[i] for i in np.flatnonzero(involved)]
        reasons.append(
            f"singular information matrix: {bad} are not separately identified by the data "
            "(collinear, or without variation where the action is chosen); their standard "
            "errors are NaN"
        )
    return cov, se, reasons


def _finish(
    name: str,
    panel: Panel,
    anchor: int,
    discount: float,
    feats: FloatArray,
    names: list[str],
    theta: FloatArray,
    information: FloatArray,
    trans: FloatArray,
    converged: bool,
    stopped: str = "",
) -> ChoiceResults:
    rewards = np.where(panel.feasible, feats @ theta, 0.0)
    cov, se, reasons = _covariance(information, names)
    # categorical terms of linear_features are "<column>=<level>" against the first level
    reference_levels = {
        str(c): str(sorted(panel.states[c].astype(str).unique())[0])
        for c in panel.state_cols
        if not (
            pd.api.types.is_numeric_dtype(panel.states[c])
            or pd.api.types.is_bool_dtype(panel.states[c])
        )
        and any(n.split(":", 1)[-1].startswith(f"{c}=") for n in names)
    }
    if stopped:
        reasons.insert(0, stopped)
    sol = solve_values(rewards, trans, panel.feasible, discount)
    counts = panel.counts()
    with np.errstate(divide="ignore"):
        logp = np.where(panel.feasible, np.log(np.maximum(sol.policy, 1e-300)), 0.0)
    ll_choice = float((counts * logp).sum())
    ll_trans = _transition_loglik(panel, trans)
    return fit_results(
        panel,
        anchor,
        estimator=name,
        anchor_reward=0.0,
        discount=discount,
        feasible=panel.feasible,
        rewards=rewards,
        q=sol.q,
        policy=sol.policy,
        values=sol.values,
        transitions=trans,
        counts=counts,
        loglik=ll_choice + ll_trans,
        converged=bool(converged and sol.converged),
        params=theta,
        se=se,
        param_names=names,
        info={
            "loglik_choice": ll_choice,
            "loglik_transitions": ll_trans,
            "n_obs": panel.n_obs,
            "cov": cov.tolist(),
            "not_trusted": reasons,
            "reference_levels": reference_levels,
        },
    )


_FLOPS: list[float] = []


def _flop_rate() -> float:
    """Floating-point operations per second of a dense solve here (measured once).

    One thread, the best of five 400 x 400 solves (the fastest run is the least
    disturbed by other work on the machine).
    """
    if not _FLOPS:
        import time

        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        n = 400
        m = np.eye(n) * n + np.random.default_rng(0).random((n, n))
        b = np.ones(n)
        best = np.inf
        with threadpool_limits(limits=1):
            for _ in range(5):
                t0 = time.perf_counter()
                scipy.linalg.solve(m, b)
                best = min(best, time.perf_counter() - t0)
        _FLOPS.append((2.0 / 3.0) * n**3 / max(best, 1e-6))
    return _FLOPS[0]


def nfxp_cost(n_states: int, n_actions: int, *, evaluations: int = 60) -> tuple[float, float]:
    """Estimated bytes and seconds of an NFXP fit on a dense state space.

    Memory: the transitions (``n_actions`` S x S), the Newton-Kantorovich matrix, its
    factorisation and the policy's transition matrix (about ``(n_actions + 3) S^2``
    doubles). Time: ``evaluations`` likelihood evaluations, each about three
    ``S x S`` factorisations (``2 S^3 / 3`` operations each) at the measured rate.
    """
    check_dense_size(n_states, n_actions, limit=float("inf"))
    need = 8.0 * (n_actions + 3) * float(n_states) ** 2
    secs = evaluations * 3 * (2.0 / 3.0) * float(n_states) ** 3 / _flop_rate()
    return need, secs


def _duration(secs: float) -> str:
    if secs < 120:
        return f"{secs:,.1f} s"
    if secs < 7200:
        return f"{secs / 60:,.0f} min"
    return f"{secs / 3600:,.1f} h"


class CCP:
    """Hotz-Miller conditional choice probability estimator (pseudo-likelihood).

    The value function is written in the estimated policy ``pi`` and transitions ``P``:
    ``V = (I - beta P_pi)^{-1} sum_a pi_a (r_a - log pi_a)``, linear in ``theta``; then
    ``theta`` maximises the logit likelihood of ``Q_a = r_a + beta P_a V``. Standard
    errors ignore the first stage.

    Parameters
    ----------
    anchor : Any
        Action whose reward is 0 (its features must be zero).
    discount : float in [0, 1)
    features : callable, optional
        ``features(panel) -> (array (n_states, n_actions, n_params), names)``;
        :func:`linear_features` by default.
    smoothing : float, default 0.5
        Pseudo-count in the first-stage policy.
    clip : float, default 1e-6
    """

    def __init__(
        self,
        *,
        anchor: Any,
        discount: float,
        features: FeatureFn | None = None,
        smoothing: float = 0.5,
        clip: float = 1e-6,
    ) -> None:
        self.anchor = anchor
        self.discount = discount
        self.features = features
        self.smoothing = smoothing
        self.clip = clip

    def fit(self, panel: Panel) -> ChoiceResults:
        """Estimate ``theta`` on a panel."""
        with small_blas(panel.n_states):
            return self._fit(panel)

    def _fit(self, panel: Panel) -> ChoiceResults:
        _check_hyper(self.discount, self.clip)
        if self.smoothing < 0:
            raise ValueError(f"smoothing == {self.smoothing}, must be >= 0.")
        a0 = panel.check_anchor(self.anchor)
        feats, names = _features(panel, self.anchor, self.features)
        trans, _ = estimate_transitions(panel)
        counts = panel.counts()
        pol = _frequency_policy(counts, panel.feasible, self.smoothing, self.clip)
        beta = self.discount
        n_s = panel.n_states
        m = np.eye(n_s) - beta * policy_transition(trans, pol)
        with np.errstate(divide="ignore"):
            ent = -np.where(panel.feasible, pol * np.log(np.maximum(pol, 1e-300)), 0.0).sum(axis=1)
        a_mat = scipy.linalg.solve(m, np.einsum("sa,sak->sk", pol, feats))
        b_vec = scipy.linalg.solve(m, ent)
        z = feats + beta * np.einsum("ast,tk->sak", trans, a_mat)
        c = beta * np.einsum("ast,t->sa", trans, b_vec)
        theta, info, ok = _logit_newton(z, c, panel.feasible, counts, np.zeros(feats.shape[2]))
        stopped = "" if ok else "the Newton iterations stopped before convergence"
        return _finish("ccp", panel, a0, beta, feats, names, theta, info, trans, ok, stopped)


class NFXP:
    """Rust's nested fixed point maximum likelihood on a panel.

    Transitions are estimated by frequency (first stage) and held fixed; ``theta``
    maximises the choice likelihood by BHHH (then Newton) with a Newton-Kantorovich inner
    loop and analytic scores. The reported log-likelihood is the full one (choices plus
    the frequency transitions). Standard errors from the outer product of the scores.

    Parameters
    ----------
    anchor : Any
        Action whose reward is 0.
    discount : float in [0, 1)
    features : callable, optional
        As :class:`CCP`; :func:`linear_features` by default (a linear-in-state-features
        reward per non-anchor action).
    start : {"ccp", "zero"}, default "ccp"
        Starting values of the outer loop.
    method : {"newton", "contraction"}
        Inner solver.
    max_memory : float, default 2 GiB
        Refuse (before solving) a panel whose dense matrices would need more bytes.
    max_seconds : float, default 1800
        Refuse a panel whose estimated solving time exceeds this (measured from this
        machine's speed on a small linear solve; an order-of-magnitude estimate).
    """

    def __init__(
        self,
        *,
        anchor: Any,
        discount: float,
        features: FeatureFn | None = None,
        start: str = "ccp",
        method: str = "newton",
        max_memory: float = 2 * 1024**3,
        max_seconds: float = 1800.0,
    ) -> None:
        self.anchor = anchor
        self.discount = discount
        self.features = features
        self.start = start
        self.method = method
        self.max_memory = max_memory
        self.max_seconds = max_seconds

    def fit(self, panel: Panel) -> ChoiceResults:
        """Estimate ``theta`` on a panel."""
        with small_blas(panel.n_states):
            return self._fit(panel)

    def _fit(self, panel: Panel) -> ChoiceResults:
        _check_hyper(self.discount, 1e-6)
        if self.start not in ("ccp", "zero"):
            raise ValueError(f"start == {self.start!r}, must be 'ccp' or 'zero'.")
        if self.method not in ("newton", "contraction"):
            raise ValueError(f"method == {self.method!r}, must be 'newton' or 'contraction'.")
        if not self.max_memory > 0 or not self.max_seconds > 0:
            raise ValueError(
                f"max_memory == {self.max_memory}, max_seconds == {self.max_seconds}; both "
                "must be > 0."
            )
        a0 = panel.check_anchor(self.anchor)
        need, secs = nfxp_cost(panel.n_states, panel.n_actions)
        if need > self.max_memory or secs > self.max_seconds:
            raise DataValidationError(
                f"NFXP on {panel.n_states:,} states and {panel.n_actions} actions needs about "
                f"{need / 1024**3:,.2f} GiB and {_duration(secs)} on this machine (limits "
                f"max_memory={self.max_memory / 1024**3:,.2f} GiB, max_seconds="
                f"{self.max_seconds:g}); bin fine-grained state columns (bins=, --bins "
                "COLUMN=N), use fewer state columns, or raise the limits."
            )
        logger.info(
            "NFXP: %d states, about %.2f GiB, %s", panel.n_states, need / 1024**3, _duration(secs)
        )
        feats, names = _features(panel, self.anchor, self.features)
        trans, _ = estimate_transitions(panel)
        s, a, w = _aggregate(panel)
        n_a, n_s = panel.n_actions, panel.n_states

        def tfn(psi: FloatArray) -> tuple[FloatArray, FloatArray]:
            return trans, np.zeros((0, n_a, n_s, n_s))

        def tll(psi: FloatArray) -> tuple[FloatArray, FloatArray]:
            return np.zeros(len(s)), np.zeros((len(s), 0))

        problem = NFXPProblem(
            features=feats,
            feasible=panel.feasible,
            discount=self.discount,
            states=s,
            actions=a,
            transitions=tfn,
            transition_loglik=tll,
            method=self.method,
            weights=w,
        )
        if self.start == "ccp":
            theta0 = CCP(anchor=self.anchor, discount=self.discount, features=self.features)
            theta0_v = theta0.fit(panel).params
        else:
            theta0_v = np.zeros(feats.shape[2])
        out = maximize_bhhh(problem, theta0_v, np.zeros(0), free_psi=False)
        sc = out.scores
        info = sc.T @ (sc * w[:, None])
        stopped = "" if out.converged else f"BHHH stopped after {out.n_iter} iterations"
        return _finish(
            "nfxp",
            panel,
            a0,
            self.discount,
            feats,
            names,
            out.params,
            info,
            trans,
            out.converged,
            stopped,
        )
