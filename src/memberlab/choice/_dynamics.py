"""Forward dynamics of a fitted or true choice model: members moved month by month.

Shared by the environments (:mod:`memberlab.choice._env`) and the counterfactuals
(:mod:`memberlab.choice._counterfactual`), which used to import each other for these:
exact propagation of the state distribution, and Monte Carlo paths of members.
"""

from __future__ import annotations

import numpy as np

from memberlab._typing import FloatArray, IntArray

__all__ = ["propagate_shares", "sample_next", "simulate_path"]


def sample_next(
    transitions: FloatArray, actions: IntArray, states: IntArray, u: FloatArray
) -> IntArray:
    """Draw next states ``s' ~ P[a, s, :]`` for many members at once.

    Parameters
    ----------
    transitions : ndarray of shape (n_actions, n_states, n_states)
    actions, states : ndarray of int, shape (n,)
    u : ndarray of shape (n,), uniforms on [0, 1)

    Returns
    -------
    ndarray of int, shape (n,)
    """
    n_a, n_s, _ = transitions.shape
    cum = np.cumsum(transitions.reshape(n_a * n_s, n_s), axis=1)
    cum /= cum[:, -1:]
    return _draw_rows(cum, actions * n_s + states, u)


def _draw_rows(cum: FloatArray, rows: IntArray, u: FloatArray) -> IntArray:
    n_cols = cum.shape[1]
    flat = (cum + np.arange(cum.shape[0])[:, None]).ravel()
    pos = np.searchsorted(flat, rows + u, side="right")
    return np.minimum(pos - rows * n_cols, n_cols - 1).astype(np.int64)


def _propagate(
    policy: FloatArray,
    transitions: FloatArray,
    initial: FloatArray,
    months: int,
    *,
    anchor: int | None = None,
    on_plan: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Exact joint distribution over (state, action) by month, and churn.

    Returns ``joint`` of shape (months, n_states, n_actions) and ``churn`` of shape
    (months,): the share of members on a plan (previous action not the anchor; in month 0
    with probability ``on_plan[s]``) who choose the anchor. ``churn`` is NaN without
    ``anchor``.
    """
    n_s, n_a = policy.shape
    dist = np.asarray(initial, dtype=float) / float(np.sum(initial))
    on = dist * (np.zeros(n_s) if on_plan is None else on_plan)
    joint = np.empty((months, n_s, n_a))
    churn = np.full(months, np.nan)
    for t in range(months):
        j = dist[:, None] * policy
        joint[t] = j
        if anchor is not None:
            j_on = on[:, None] * policy
            churn[t] = float(j_on[:, anchor].sum() / on.sum()) if on.sum() > 0 else 0.0
        flows = np.einsum("sa,ast->at", j, transitions)  # (A, S')
        dist = flows.sum(axis=0)
        if anchor is not None:
            on = dist - flows[anchor]
    return joint, churn


def propagate_shares(
    policy: FloatArray, transitions: FloatArray, initial: FloatArray, months: int
) -> FloatArray:
    """Exact action shares month by month from an initial state distribution.

    Parameters
    ----------
    policy : ndarray of shape (n_states, n_actions)
    transitions : ndarray of shape (n_actions, n_states, n_states)
    initial : ndarray of shape (n_states,)
        Distribution of members over states in month 0.
    months : int

    Returns
    -------
    ndarray of shape (months, n_actions)
    """
    joint, _ = _propagate(policy, transitions, initial, months)
    return joint.sum(axis=1)


def simulate_path(
    policy: FloatArray,
    transitions: FloatArray,
    initial: IntArray,
    n_months: int,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """Simulate members forward: states and actions, each of shape (n_members, n_months)."""
    n = len(initial)
    n_a, n_s, _ = transitions.shape
    cum_pol = np.cumsum(policy, axis=1)
    cum_pol /= cum_pol[:, -1:]
    cum_tr = np.cumsum(transitions.reshape(n_a * n_s, n_s), axis=1)
    cum_tr /= cum_tr[:, -1:]
    states = np.empty((n, n_months), dtype=np.int64)
    actions = np.empty((n, n_months), dtype=np.int64)
    s = np.asarray(initial, dtype=np.int64)
    for t in range(n_months):
        states[:, t] = s
        a = _draw_rows(cum_pol, s, rng.random(n))
        actions[:, t] = a
        s = _draw_rows(cum_tr, a * n_s + s, rng.random(n))
    return states, actions
