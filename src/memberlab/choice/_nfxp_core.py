"""The nested fixed point likelihood with analytic scores, and a BHHH maximiser.

Reward ``r(s, a) = features[s, a] @ theta``; transitions ``P(psi)`` may depend on
parameters ``psi`` (Rust's mileage increments) whose own likelihood (the transition part
of the full likelihood) is given per observation.

Scores use the implicit function theorem on ``V = T(V; theta, psi)``:
``dV = (I - beta P_pi)^{-1} sum_a pi_a (dr_a + beta dP_a V)``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from memberlab._errors import ConvergenceWarning
from memberlab._typing import BoolArray, FloatArray, IntArray
from memberlab.choice._solve import policy_transition, solve_values

logger = logging.getLogger(__name__)

TransitionFn = Callable[[FloatArray], tuple[FloatArray, FloatArray]]
TransitionLogLik = Callable[[FloatArray], tuple[FloatArray, FloatArray]]


@dataclass(frozen=True, slots=True)
class NFXPProblem:
    """Everything the likelihood needs.

    Attributes
    ----------
    features : ndarray of shape (n_states, n_actions, n_params)
    feasible : ndarray of bool, shape (n_states, n_actions)
    discount : float
    states, actions : ndarray of int, shape (n_obs,)
    transitions : callable ``psi -> (P, dP)``; ``P`` of shape (n_actions, n_states,
        n_states), ``dP`` of shape (n_psi, n_actions, n_states, n_states)
    transition_loglik : callable ``psi -> (ll, score)``, shapes (n_obs,), (n_obs, n_psi);
        per observation, aligned with ``states``
    method : inner solver, ``"newton"`` or ``"contraction"``
    """

    features: FloatArray
    feasible: BoolArray
    discount: float
    states: IntArray
    actions: IntArray
    transitions: TransitionFn
    transition_loglik: TransitionLogLik
    method: str = "newton"
    weights: FloatArray | None = None


@dataclass(slots=True)
class _Eval:
    ll: float
    scores: FloatArray  # (n_obs, n_theta + n_psi)
    values: FloatArray
    converged: bool


def nfxp_loglik(
    problem: NFXPProblem,
    theta: FloatArray,
    psi: FloatArray,
    *,
    init: FloatArray | None = None,
    with_scores: bool = True,
) -> _Eval:
    """Full log-likelihood (choices plus transitions) and per-observation scores."""
    feats = problem.features
    n_states, n_actions, n_theta = feats.shape
    beta = problem.discount
    trans, dtrans = problem.transitions(psi)
    rewards = feats @ theta
    sol = solve_values(rewards, trans, problem.feasible, beta, init=init, method=problem.method)
    pol = sol.policy
    with np.errstate(divide="ignore"):
        logpol = np.where(problem.feasible, np.log(pol), -np.inf)
    s, a = problem.states, problem.actions
    ll_choice = logpol[s, a]
    tll, tscore = problem.transition_loglik(psi)
    wts = np.ones(len(s)) if problem.weights is None else problem.weights
    ll = float(wts @ ll_choice + wts @ tll)
    if not np.isfinite(ll):
        return _Eval(-np.inf, np.zeros((len(s), n_theta + len(psi))), sol.values, sol.converged)
    if not with_scores:
        return _Eval(ll, np.zeros((0, 0)), sol.values, sol.converged)
    n_psi = len(psi)
    # right-hand sides: d/dtheta and d/dpsi of T(V) at fixed V
    pol_f = np.where(problem.feasible, pol, 0.0)
    rhs_theta = np.einsum("sa,sak->sk", pol_f, feats)  # (S, K)
    if n_psi:
        dpv = beta * np.einsum("last,t->lsa", dtrans, sol.values)  # (L, S, A)
        rhs_psi = np.einsum("sa,lsa->sl", pol_f, dpv)  # (S, L)
        rhs = np.concatenate([rhs_theta, rhs_psi], axis=1)
    else:
        rhs = rhs_theta
    if beta > 0:
        jac = np.eye(n_states) - beta * policy_transition(trans, pol)
        dv = scipy.linalg.solve(jac, rhs)  # (S, K + L)
        pdv = beta * np.einsum("ast,tk->sak", trans, dv)  # (S, A, K + L)
    else:
        pdv = np.zeros((n_states, n_actions, rhs.shape[1]))
    dq = pdv.copy()
    dq[:, :, :n_theta] += feats
    if n_psi:
        dq[:, :, n_theta:] += np.moveaxis(dpv, 0, 2)
    mean_dq = np.einsum("sa,sak->sk", pol_f, dq)
    scores = dq[s, a] - mean_dq[s]
    if n_psi:
        scores[:, n_theta:] += tscore
    return _Eval(ll, scores, sol.values, sol.converged)


@dataclass(frozen=True, slots=True)
class BHHHResult:
    """Outcome of :func:`maximize_bhhh`."""

    params: FloatArray
    loglik: float
    scores: FloatArray
    values: FloatArray
    n_iter: int
    converged: bool
    inner_converged: bool


def maximize_bhhh(
    problem: NFXPProblem,
    theta0: FloatArray,
    psi0: FloatArray,
    *,
    free_psi: bool,
    tol: float = 1e-10,
    max_iter: int = 200,
    newton_switch: float = 1e-1,
) -> BHHHResult:
    """Maximise the NFXP likelihood by BHHH with step halving.

    Parameters
    ----------
    free_psi : bool
        Whether the transition parameters are estimated jointly (Rust's third stage).
    tol : float
        Stop when the BHHH decrement ``g' H^{-1} g`` falls below ``tol``.
    newton_switch : float
        Below this decrement, take Newton steps with a finite-difference Hessian of the
        analytic gradient (BHHH alone converges only linearly near the optimum).
    """
    n_theta = len(theta0)
    theta = np.array(theta0, dtype=float)
    psi = np.array(psi0, dtype=float)
    cur = nfxp_loglik(problem, theta, psi)
    if not np.isfinite(cur.ll):
        raise ValueError("the likelihood is not finite at the starting values.")
    converged = False
    it = 0
    n_free = n_theta + (len(psi) if free_psi else 0)

    def grad_at(x: FloatArray) -> FloatArray:
        t_ = x[:n_theta]
        p_ = x[n_theta:] if free_psi else psi
        ev = nfxp_loglik(problem, t_, p_, init=cur.values)
        wts = np.ones(len(ev.scores)) if problem.weights is None else problem.weights
        return np.asarray(wts @ ev.scores[:, :n_free])

    for it in range(1, max_iter + 1):
        sc = cur.scores[:, :n_free]
        wts = np.ones(len(sc)) if problem.weights is None else problem.weights
        g = wts @ sc
        h = sc.T @ (sc * wts[:, None])
        try:
            step = scipy.linalg.solve(h, g, assume_a="pos")
        except (scipy.linalg.LinAlgError, ValueError):
            step = np.linalg.lstsq(h, g, rcond=None)[0]
        dec = float(g @ step)
        logger.debug("BHHH iter %d ll=%.6f decrement=%.3g", it, cur.ll, dec)
        if dec < tol:
            converged = True
            break
        if dec < newton_switch:
            # near the optimum BHHH converges only linearly; take Newton steps on a
            # Hessian from central differences of the analytic gradient
            x0 = np.concatenate([theta, psi])[:n_free]
            hess = np.empty((n_free, n_free))
            for k in range(n_free):
                eps = 1e-5 * max(1.0, abs(x0[k]))
                e = np.zeros(n_free)
                e[k] = eps
                hess[:, k] = (grad_at(x0 + e) - grad_at(x0 - e)) / (2 * eps)
            hess = 0.5 * (hess + hess.T)
            if np.all(np.isfinite(hess)) and np.all(np.linalg.eigvalsh(hess) < 0):
                with contextlib.suppress(np.linalg.LinAlgError):
                    step = np.linalg.solve(-hess, g)
        lam = 1.0
        improved = False
        for _ in range(40):
            t_new = theta + lam * step[:n_theta]
            p_new = psi + lam * step[n_theta:] if free_psi else psi
            new = nfxp_loglik(problem, t_new, p_new, init=cur.values)
            if np.isfinite(new.ll) and new.ll >= cur.ll - 1e-12 * abs(cur.ll):
                theta, psi, cur = t_new, p_new, new
                improved = True
                break
            lam *= 0.5
        if not improved:
            break
    if not converged:
        warnings.warn(
            f"BHHH stopped after {it} iterations without meeting tol={tol}.",
            ConvergenceWarning,
            stacklevel=2,
        )
    params = np.concatenate([theta, psi])
    return BHHHResult(params, cur.ll, cur.scores, cur.values, it, converged, cur.converged)
