"""Deep PQR on the bus environment of Geng et al. (ICML 2020), continuous states.

Metric as in the paper's bus experiment: the squared error of the linear fit of the
estimated reward of ``keep`` on the state, against the truth ``(5, -1, 0, 0)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from memberlab.choice import BusEnv, Panel, deep_pqr
from memberlab.choice._deep import HeldOutMLPClassifier


def test_held_out_classifier_stops_on_log_loss() -> None:
    """A logistic truth (seed 4, 3,000 rows): probabilities within 0.05 on average."""
    g = np.random.default_rng(4)
    x = g.uniform(-3, 3, (3000, 1))
    p = 1 / (1 + np.exp(-2 * x[:, 0]))
    y = (g.random(3000) < p).astype(int)
    clf = HeldOutMLPClassifier(hidden_layer_sizes=(16,), random_state=0).fit(x, y)
    assert clf.n_iter_ < 200 and np.isfinite(clf.best_validation_loss_)
    assert np.abs(clf.predict_proba(x)[:, 1] - p).mean() < 0.05
    with pytest.raises(ValueError, match=r"validation_fraction == 1\.5"):
        HeldOutMLPClassifier(validation_fraction=1.5).fit(x, y)


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

    Measured squared error 0.25 (coefficients 4.57, -0.75, 0.06, 0.01). Tolerance: below
    0.6, and the noise coefficients below 0.2 in absolute value.
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
        continuous=env.state_cols,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deep_pqr(
            anchor="replace", discount=env.discount, rng=0, transitions_max_states=0
        ).fit(panel)
    x = panel.states[env.state_cols].to_numpy(float)
    coef = np.linalg.lstsq(np.column_stack([np.ones(len(x)), x]), res.rewards[:, 1], rcond=None)[0]
    err = float(((coef - env.true_coef) ** 2).sum())
    assert err < 0.6, (err, coef)
    assert np.abs(coef[2:]).max() < 0.2, coef
    assert (res.rewards[:, 0] == 0).all()
