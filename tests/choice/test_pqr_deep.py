"""Deep PQR on the bus environment of Geng et al. (ICML 2020), continuous states.

Metric as in the paper's bus experiment: the squared error of the linear fit of the
estimated reward of ``keep`` on the state, against the truth ``(5, -1, 0, 0)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from memberlab.choice import BusEnv, Panel, deep_pqr


def test_bus_env_matches_the_description() -> None:
    env = BusEnv()
    frame = env.simulate(2000, rng=3)
    s = frame[env.state_cols].to_numpy()
    keep = (frame["action"] == "keep").to_numpy()
    # replace resets the mileage; keep adds U(1, 2); noise is U(-5, 5)
    assert (s[1:, 0][~keep[:-1]] == 0).all()
    inc = s[1:, 0][keep[:-1]] - s[:-1, 0][keep[:-1]]
    assert inc.min() >= 1 and inc.max() <= 2
    assert np.abs(s[:, 1:]).max() <= 5 and abs(s[:, 1:].mean()) < 0.2
    # the soft-optimal policy keeps low mileage and replaces high mileage
    grid, p_keep = env.solve()
    assert np.interp(0.0, grid, p_keep) > 0.9 and np.interp(10.0, grid, p_keep) < 0.01
    np.testing.assert_array_equal(env.true_coef, [5.0, -1.0, 0.0, 0.0])


@pytest.mark.slow
def test_deep_pqr_recovers_the_bus_reward() -> None:
    """5,000 transitions, seed 0, networks seeded with rng=0 (default settings).

    Measured squared error 0.77 (coefficients 4.16, -0.77, 0.03, 0.01). Tolerance: below
    1.5, and the noise coefficients below 0.25 in absolute value.
    """
    env = BusEnv()
    frame = env.simulate(5000, rng=0)
    panel = Panel.from_frame(
        frame,
        id="bus",
        time="t",
        state=env.state_cols,
        action="action",
        actions=["replace", "keep"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deep_pqr(
            anchor="replace", discount=env.discount, rng=0, transitions_max_states=0
        ).fit(panel)
    x = panel.states[env.state_cols].to_numpy(float)
    coef = np.linalg.lstsq(np.column_stack([np.ones(len(x)), x]), res.rewards[:, 1], rcond=None)[0]
    err = float(((coef - env.true_coef) ** 2).sum())
    assert err < 1.5, (err, coef)
    assert np.abs(coef[2:]).max() < 0.25, coef
    assert (res.rewards[:, 0] == 0).all()
