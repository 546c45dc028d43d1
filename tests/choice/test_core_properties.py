"""Property tests of the pure core on random small models (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlab.choice import pqr_tabular, propagate_shares, solve_values


def _model(seed: int, n_s: int, n_a: int):  # type: ignore[no-untyped-def]
    g = np.random.default_rng(seed)
    trans = g.dirichlet(np.full(n_s, 0.5), size=(n_a, n_s))
    rewards = g.normal(size=(n_s, n_a))
    rewards[:, 0] = 0.0
    feasible = np.ones((n_s, n_a), dtype=bool)
    return trans, rewards, feasible


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_s=st.integers(2, 12),
    n_a=st.integers(2, 4),
    beta=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
)
def test_newton_equals_value_iteration(seed: int, n_s: int, n_a: int, beta: float) -> None:
    trans, rewards, feasible = _model(seed, n_s, n_a)
    a = solve_values(rewards, trans, feasible, beta)
    b = solve_values(rewards, trans, feasible, beta, method="contraction", tol=1e-12)
    assert a.converged and b.converged
    np.testing.assert_allclose(a.values, b.values, atol=1e-7)
    np.testing.assert_allclose(a.policy.sum(axis=1), 1.0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_s=st.integers(2, 12),
    n_a=st.integers(2, 4),
    beta=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
)
def test_pqr_inverts_the_model(seed: int, n_s: int, n_a: int, beta: float) -> None:
    """Solve then invert: PQR returns the rewards (anchor 0) to machine precision."""
    trans, rewards, feasible = _model(seed, n_s, n_a)
    sol = solve_values(rewards, trans, feasible, beta)
    est, _, values = pqr_tabular(sol.policy, trans, feasible, 0, beta)
    np.testing.assert_allclose(est, rewards, atol=1e-8)
    np.testing.assert_allclose(values, sol.values, atol=1e-7)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), months=st.integers(1, 6))
def test_shares_are_distributions(seed: int, months: int) -> None:
    trans, rewards, feasible = _model(seed, 6, 3)
    pol = solve_values(rewards, trans, feasible, 0.9).policy
    shares = propagate_shares(pol, trans, np.ones(6), months)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert (shares >= 0).all()
