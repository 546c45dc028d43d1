"""Solving the dynamic logit model on a discrete state space.

The model: ``Q(s, a) = r(s, a) + beta * sum_s' P[a, s, s'] V(s')``,
``V(s) = log sum_{a feasible} exp Q(s, a)``, ``pi(a | s) = exp(Q(s, a) - V(s))``.

``V`` is the fixed point of a contraction with modulus ``beta``; near ``beta = 1`` plain
iteration is slow, so :func:`solve_values` runs a few contraction steps and then
Newton-Kantorovich steps ``V <- V - (I - beta P_pi)^{-1} (V - T(V))`` (Rust 2000, NFXP
manual), which converge quadratically.

When every feasible action's transition rows sum to one, ``T(V + k) = T(V) + beta k``, so
the solver works on the relative value ``W = V - V(0)`` (the fixed point of ``W = T(W) -
T(W)(0)``) and recovers ``V(0) = T(W)(0) / (1 - beta)`` at the end. The relative
Jacobian ``I - (I - 1 e_0') beta P_pi`` has no eigenvalue near ``1 - beta``, so its
condition number and the size of ``W`` do not grow as ``beta -> 1``: choice
probabilities stay accurate to rounding at ``beta = 0.9999`` where ``V`` is ``1e5``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from memberlab._typing import BoolArray, FloatArray

__all__ = [
    "Solution",
    "bellman",
    "is_stochastic",
    "policy_transition",
    "relative_jacobian",
    "small_blas",
    "solve_values",
]

logger = logging.getLogger(__name__)

_NEG = -np.inf
_SMALL = 1000


@contextmanager
def small_blas(n_states: int) -> Iterator[None]:
    """One BLAS/OpenMP thread for small state spaces (threads only add overhead there)."""
    if n_states >= _SMALL:
        yield
        return
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1):
        yield


def _masked_q(rewards: FloatArray, cont: FloatArray, feasible: BoolArray) -> FloatArray:
    q = rewards + cont
    return np.where(feasible, q, _NEG)


def bellman(
    values: FloatArray,
    rewards: FloatArray,
    transitions: FloatArray,
    feasible: BoolArray,
    discount: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One Bellman step of the dynamic logit model.

    Parameters
    ----------
    values : ndarray of shape (n_states,)
    rewards : ndarray of shape (n_states, n_actions)
    transitions : ndarray of shape (n_actions, n_states, n_states)
    feasible : ndarray of bool, shape (n_states, n_actions)
    discount : float

    Returns
    -------
    new_values : ndarray of shape (n_states,)
    q : ndarray of shape (n_states, n_actions), ``-inf`` where infeasible
    policy : ndarray of shape (n_states, n_actions)
    """
    cont = discount * (transitions @ values).T  # (S, A); BLAS, faster than einsum
    q = _masked_q(rewards, cont, feasible)
    qmax = q.max(axis=1)
    e = np.exp(q - qmax[:, None])
    tot = e.sum(axis=1)
    new = qmax + np.log(tot)
    return new, q, e / tot[:, None]


def policy_transition(transitions: FloatArray, policy: FloatArray) -> FloatArray:
    """``P_pi[s, s'] = sum_a pi(a | s) P[a, s, s']``, shape (n_states, n_states)."""
    out = policy[:, 0, None] * transitions[0]
    for a in range(1, transitions.shape[0]):
        out += policy[:, a, None] * transitions[a]
    return out


def is_stochastic(transitions: FloatArray, feasible: BoolArray, *, atol: float = 1e-10) -> bool:
    """Whether every feasible action's transition rows sum to one."""
    sums = transitions.sum(axis=2)  # (A, S)
    return bool(np.all(np.abs(np.where(feasible.T, sums, 1.0) - 1.0) <= atol))


def relative_jacobian(discount: float, p_pi: FloatArray) -> FloatArray:
    """``I - (I - 1 e_0') beta P_pi``: the Jacobian of ``W - T(W) + T(W)(0)``."""
    m = discount * p_pi
    return np.eye(len(m)) - (m - m[0][None, :])


@dataclass(frozen=True, slots=True)
class Solution:
    """The solved model.

    Attributes
    ----------
    values : ndarray of shape (n_states,)
    q : ndarray of shape (n_states, n_actions), ``-inf`` where infeasible
    policy : ndarray of shape (n_states, n_actions)
    converged : bool
    n_contraction : int
    n_newton : int
    """

    values: FloatArray
    q: FloatArray
    policy: FloatArray
    converged: bool
    n_contraction: int
    n_newton: int


def solve_values(
    rewards: FloatArray,
    transitions: FloatArray,
    feasible: BoolArray,
    discount: float,
    *,
    init: FloatArray | None = None,
    method: str = "newton",
    tol: float = 1e-11,
    max_contraction: int = 30,
    switch_tol: float = 1e-3,
    max_newton: int = 30,
    max_iter: int = 1_000_000,
) -> Solution:
    """Solve the Bellman equation of the dynamic logit model.

    Parameters
    ----------
    rewards : ndarray of shape (n_states, n_actions)
    transitions : ndarray of shape (n_actions, n_states, n_states)
    feasible : ndarray of bool, shape (n_states, n_actions)
    discount : float in [0, 1)
    init : ndarray of shape (n_states,), optional
        Warm start.
    method : {"newton", "contraction"}
        ``"newton"``: contraction steps until the change is below ``switch_tol`` (at most
        ``max_contraction``), then Newton-Kantorovich. ``"contraction"``: plain value
        iteration (the slow baseline) up to ``max_iter`` steps.
    tol : float
        Stop when ``max |V - T(V)| < tol * max(1, max |V|)``.

    Returns
    -------
    Solution
    """
    n_states = rewards.shape[0]
    values = np.zeros(n_states) if init is None else np.array(init, dtype=float)
    n_c = 0
    n_n = 0
    if discount == 0.0:
        new, q, pol = bellman(values, rewards, transitions, feasible, 0.0)
        return Solution(new, q, pol, True, 1, 0)
    if method == "contraction":
        while n_c < max_iter:
            new, q, pol = bellman(values, rewards, transitions, feasible, discount)
            n_c += 1
            err = float(np.max(np.abs(new - values)))
            values = new
            if err < tol * max(1.0, float(np.max(np.abs(values)))):
                return Solution(values, q, pol, True, n_c, 0)
        new, q, pol = bellman(values, rewards, transitions, feasible, discount)
        return Solution(new, q, pol, False, n_c, 0)
    if method != "newton":
        raise ValueError(f"method == {method!r}, must be 'newton' or 'contraction'.")
    if is_stochastic(transitions, feasible):
        return _solve_relative(
            values,
            rewards,
            transitions,
            feasible,
            discount,
            tol,
            max_contraction,
            switch_tol,
            max_newton,
        )
    for _ in range(max_contraction):
        new, q, pol = bellman(values, rewards, transitions, feasible, discount)
        n_c += 1
        err = float(np.max(np.abs(new - values)))
        values = new
        if err < switch_tol:
            break
    eye = np.eye(n_states)
    converged = False
    for _ in range(max_newton):
        new, q, pol = bellman(values, rewards, transitions, feasible, discount)
        resid = values - new
        if float(np.max(np.abs(resid))) < tol * max(1.0, float(np.max(np.abs(values)))):
            converged = True
            break
        jac = eye - discount * policy_transition(transitions, pol)
        values = values - scipy.linalg.solve(jac, resid)
        n_n += 1
    new, q, pol = bellman(values, rewards, transitions, feasible, discount)
    if not converged:
        logger.warning("Newton-Kantorovich did not converge in %d steps", max_newton)
    return Solution(values, q, pol, converged, n_c, n_n)


def _solve_relative(
    values: FloatArray,
    rewards: FloatArray,
    transitions: FloatArray,
    feasible: BoolArray,
    discount: float,
    tol: float,
    max_contraction: int,
    switch_tol: float,
    max_newton: int,
) -> Solution:
    """Relative value iteration, then Newton-Kantorovich on ``W = V - V(0)``."""
    w = values - values[0]
    n_c = 0
    n_n = 0
    for _ in range(max_contraction):
        new, q, pol = bellman(w, rewards, transitions, feasible, discount)
        n_c += 1
        new = new - new[0]
        err = float(np.max(np.abs(new - w)))
        w = new
        if err < switch_tol:
            break
    converged = False
    for _ in range(max_newton + 1):
        new, q, pol = bellman(w, rewards, transitions, feasible, discount)
        resid = w - (new - new[0])
        if float(np.max(np.abs(resid))) < tol * max(1.0, float(np.max(np.abs(w)))):
            converged = True
            break
        if n_n == max_newton:
            break
        jac = relative_jacobian(discount, policy_transition(transitions, pol))
        w = w - scipy.linalg.solve(jac, resid)
        n_n += 1
    if not converged:
        logger.warning("Newton-Kantorovich did not converge in %d steps", max_newton)
    level = float(new[0]) / (1.0 - discount)  # V(0) = T(W)(0) / (1 - beta)
    return Solution(w + level, q + discount * level, pol, converged, n_c, n_n)
