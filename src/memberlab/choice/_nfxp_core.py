"""The nested fixed point likelihood with analytic scores, and a BHHH maximiser.

Reward ``r(s, a) = features[s, a] @ theta``; transitions ``P(psi)`` may depend on
parameters ``psi`` (Rust's mileage increments) whose own likelihood (the transition part
of the full likelihood) is given per observation.

Scores use the implicit function theorem on ``V = T(V; theta, psi)``:
``dV = (I - beta P_pi)^{-1} sum_a pi_a (dr_a + beta dP_a V)``. Choice probabilities do
not change when a constant is added to ``dV``, so with stochastic transitions the solve
uses the relative form ``(I - (I - 1 e_0') beta P_pi) dW = (I - 1 e_0') rhs``, whose
conditioning does not degrade as ``beta -> 1`` (see :mod:`memberlab.choice._solve`).
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
from memberlab.choice._solve import (
    is_stochastic,
    policy_transition,
    relative_jacobian,
    solve_values,
)

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
        dpv = beta * np.swapaxes(dtrans @ sol.values, 1, 2)  # (L, S, A)
        rhs_psi = np.einsum("sa,lsa->sl", pol_f, dpv)  # (S, L)
        rhs = np.concatenate([rhs_theta, rhs_psi], axis=1)
    else:
        rhs = rhs_theta
    if beta > 0:
        p_pi = policy_transition(trans, pol)
        if is_stochastic(trans, problem.feasible):
            dv = scipy.linalg.solve(relative_jacobian(beta, p_pi), rhs - rhs[0][None, :])
        else:
            dv = scipy.linalg.solve(np.eye(n_states) - beta * p_pi, rhs)  # (S, K + L)
        pdv = beta * np.swapaxes(trans @ dv, 0, 1)  # (S, A, K + L)
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
    """Outcome of :func:`maximize_bhhh`.

    ``stop`` says why the iterations ended: ``"tol"`` (the decrement fell below ``tol``),
    ``"floor"`` (no step improves the likelihood and the decrement is below
    ``floor_tol``: the maximum to the precision of the likelihood), ``"line search"``
    or ``"max_iter"`` (not converged).
    """

    params: FloatArray
    loglik: float
    scores: FloatArray
    values: FloatArray
    n_iter: int
    converged: bool
    inner_converged: bool
    stop: str = "tol"


def maximize_bhhh(
    problem: NFXPProblem,
    theta0: FloatArray,
    psi0: FloatArray,
    *,
    free_psi: bool,
    tol: float = 1e-10,
    floor_tol: float = 1e-6,
    max_iter: int = 200,
    newton_switch: float = 1e-1,
    max_step: float = 10.0,
) -> BHHHResult:
    """Maximise the NFXP likelihood by BHHH with step control.

    Each iteration takes the BHHH direction (the outer product of the scores as the
    Hessian), or near the optimum a Newton direction, scaled down so that no parameter
    moves by more than ``max_step * max(1, |x|)``, and halves the step until the
    likelihood does not fall (at most 40 times).

    Parameters
    ----------
    free_psi : bool
        Whether the transition parameters are estimated jointly (Rust's third stage).
    tol : float
        Stop when the BHHH decrement ``g' H^{-1} g`` falls below ``tol``.
    floor_tol : float
        When no step improves the likelihood (its rounding noise has been reached), the
        point counts as the maximum if the decrement is below ``floor_tol`` (``1e-6``:
        a predicted gain of ``5e-7`` in the log-likelihood, parameters within about
        ``1e-3`` standard errors of the exact maximum).
    newton_switch : float
        Below this decrement, take Newton steps with a finite-difference Hessian of the
        analytic gradient (BHHH alone converges only linearly near the optimum).
    max_step : float
        Largest move of a parameter in one step, relative to ``max(1, |x|)``.
    """
    n_theta = len(theta0)
    theta = np.array(theta0, dtype=float)
    psi = np.array(psi0, dtype=float)
    cur = nfxp_loglik(problem, theta, psi)
    if not np.isfinite(cur.ll):
        raise ValueError("the likelihood is not finite at the starting values.")
    converged = False
    stop = "max_iter"
    it = 0
    n_free = n_theta + (len(psi) if free_psi else 0)
    wts = np.ones(len(problem.states)) if problem.weights is None else problem.weights

    def grad_at(x: FloatArray) -> FloatArray:
        t_ = x[:n_theta]
        p_ = x[n_theta:] if free_psi else psi
        ev = nfxp_loglik(problem, t_, p_, init=cur.values)
        return np.asarray(wts @ ev.scores[:, :n_free])

    for it in range(1, max_iter + 1):
        sc = cur.scores[:, :n_free]
        g = wts @ sc
        h = sc.T @ (sc * wts[:, None])
        try:
            step = scipy.linalg.solve(h, g, assume_a="pos")
        except (scipy.linalg.LinAlgError, ValueError):
            step = np.linalg.lstsq(h, g, rcond=None)[0]
        dec = float(g @ step)
        logger.debug("BHHH iter %d ll=%.6f decrement=%.3g", it, cur.ll, dec)
        if dec < tol:
            converged, stop = True, "tol"
            break
        x0 = np.concatenate([theta, psi])[:n_free]
        if dec < newton_switch:
            # near the optimum BHHH converges only linearly; take Newton steps on a
            # Hessian from forward differences of the analytic gradient (one likelihood
            # evaluation per parameter)
            hess = np.empty((n_free, n_free))
            for k in range(n_free):
                eps = 1e-6 * max(1.0, abs(x0[k]))
                e = np.zeros(n_free)
                e[k] = eps
                hess[:, k] = (grad_at(x0 + e) - g) / eps
            hess = 0.5 * (hess + hess.T)
            if np.all(np.isfinite(hess)) and np.all(np.linalg.eigvalsh(hess) < 0):
                with contextlib.suppress(np.linalg.LinAlgError):
                    step = np.linalg.solve(-hess, g)
        ratio = float(np.max(np.abs(step) / (max_step * np.maximum(1.0, np.abs(x0)))))
        lam = 1.0 / ratio if ratio > 1.0 else 1.0
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
            if dec < floor_tol:
                converged, stop = True, "floor"
            else:
                stop = "line search"
            break
    if not converged:
        warnings.warn(
            f"BHHH stopped ({stop}) after {it} iterations without meeting tol={tol}.",
            ConvergenceWarning,
            stacklevel=2,
        )
    params = np.concatenate([theta, psi])
    return BHHHResult(params, cur.ll, cur.scores, cur.values, it, converged, cur.converged, stop)
