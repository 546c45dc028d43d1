"""NFXP on simulated bus data: the design of Iskhakov, Lee, Rust, Schjerning and Seo (2016).

Truth (Su and Judd 2012; Iskhakov et al. 2016, Econometrica 84(1)): 175 cells, RC =
11.7257, theta11 = 2.45569, theta3 = (0.0937, 0.4475, 0.4459, 0.0127, 0.0002), 50 buses x
120 months. The full study (250 data sets x 5 starts x 6 discount factors) is
``benchmarks/choice_montecarlo.py``, its table in ``docs/choice_rust.md``; here three data
sets (seeds 0, 1, 2) at beta = 0.975 and 0.9999, each from the farthest starting values
of the benchmark below and above the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from memberlab.choice import fit_rust, simulate_rust, solve_values
from memberlab.choice._rust import _cost_features, _increment_transitions

RC, THETA11 = 11.7257, 2.45569
THETA3 = (0.0937, 0.4475, 0.4459, 0.0127, 0.0002)
STARTS = ((2.0, 0.5), (20.0, 8.0))


@pytest.mark.parametrize("beta", [0.975, 0.9999])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovery_from_far_starts(beta: float, seed: int) -> None:
    data = simulate_rust(rc=RC, theta11=THETA11, theta3=THETA3, discount=beta, rng=seed)
    assert len(data.states) == 50 * 120
    fits = [fit_rust(data, discount=beta, start=s) for s in STARTS]
    for res in fits:
        assert res.converged, res.stop
        # within 3 of the fit's own standard errors (BHHH) of the truth
        assert abs(res.rc - RC) < 3 * res.se["RC"], (res.rc, res.se["RC"])
        assert abs(res.theta11 - THETA11) < 3 * res.se["theta11"], (res.theta11, res.se)
        np.testing.assert_allclose(res.theta3[:4], THETA3[:4], atol=0.02)
    # both starts reach the same maximum
    assert fits[0].loglik == pytest.approx(fits[1].loglik, abs=1e-6)
    assert fits[0].rc == pytest.approx(fits[1].rc, abs=1e-4)
    assert fits[0].theta11 == pytest.approx(fits[1].theta11, abs=1e-4)


def test_relative_newton_solves_bellman_at_beta_near_one() -> None:
    """At beta = 0.9999 (V about -2300) the Bellman residual is at rounding level."""
    n = 175
    rewards = _cost_features(n) @ np.array([RC, THETA11])
    trans, _ = _increment_transitions(n, 5)(np.array(THETA3[:-1]))
    feasible = np.ones((n, 2), dtype=bool)
    sol = solve_values(rewards, trans, feasible, 0.9999)
    assert sol.converged
    q = rewards + 0.9999 * (trans @ sol.values).T
    v = np.logaddexp(q[:, 0], q[:, 1])
    assert np.max(np.abs(v - sol.values)) < 1e-8 * np.max(np.abs(sol.values))
    assert np.max(np.abs(sol.values)) > 2000
    np.testing.assert_allclose(sol.policy, np.exp(q - v[:, None]), atol=1e-10)
    # the same policy as the plain Newton-Kantorovich solve on V at a smaller beta
    sub = trans.copy()
    sub[:, -1, -1] -= 1e-9  # rows no longer sum to one: the non-relative path
    a = solve_values(rewards, trans, feasible, 0.99)
    b = solve_values(rewards, sub, feasible, 0.99)
    np.testing.assert_allclose(a.policy, b.policy, atol=1e-6)


def test_simulate_rust_is_seeded_and_validated() -> None:
    a = simulate_rust(rc=RC, theta11=THETA11, theta3=THETA3, discount=0.99, rng=3)
    b = simulate_rust(rc=RC, theta11=THETA11, theta3=THETA3, discount=0.99, rng=3)
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.decisions, b.decisions)
    assert a.states.reshape(50, 120)[:, 0].max() == 0  # every bus starts new
    with pytest.raises(ValueError, match="theta3"):
        simulate_rust(rc=RC, theta11=THETA11, theta3=(0.5, 0.6), discount=0.99)
    with pytest.raises(ValueError, match=r"discount == 1\.0"):
        simulate_rust(rc=RC, theta11=THETA11, theta3=THETA3, discount=1.0)
    with pytest.raises(ValueError, match="n_buses == 0"):
        simulate_rust(rc=RC, theta11=THETA11, theta3=THETA3, discount=0.9, n_buses=0)
