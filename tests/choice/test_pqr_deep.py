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


def _bus_panel(seed: int) -> tuple[BusEnv, Panel]:
    env = BusEnv()
    frame = env.simulate(5000, rng=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every continuous state is seen once, by design
        panel = Panel.from_frame(
            frame,
            id="bus",
            time="t",
            state=env.state_cols,
            action="action",
            actions=["replace", "keep"],
            continuous=env.state_cols,
        )
    return env, panel


def test_torch_backend_recovers_the_bus_reward() -> None:
    """Deep PQR with ``backend="torch"``: 5,000 transitions, seed 0, networks rng=0.

    Measured squared error 0.005 (coefficients 4.93, -1.00, -0.00, 0.02) in 10-30 s on
    2 shared cores. Tolerance: below 0.3, the slope within 0.2 of -1 and the noise
    coefficients below 0.15 in absolute value.
    """
    pytest.importorskip("torch", reason="torch is optional: pip install 'memberlab[torch]'")
    env, panel = _bus_panel(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deep_pqr(
            anchor="replace",
            discount=env.discount,
            rng=0,
            backend="torch",
            transitions_max_states=0,
        ).fit(panel)
    x = panel.states[env.state_cols].to_numpy(float)
    coef = np.linalg.lstsq(np.column_stack([np.ones(len(x)), x]), res.rewards[:, 1], rcond=None)[0]
    err = float(((coef - env.true_coef) ** 2).sum())
    assert err < 0.3, (err, coef)
    assert abs(coef[1] + 1) < 0.2, coef
    assert np.abs(coef[2:]).max() < 0.15, coef
    assert (res.rewards[:, 0] == 0).all()


def test_torch_learners_are_seeded_and_stop_early() -> None:
    """The same logistic truth as above: probabilities within 0.05; same seed, same fit."""
    pytest.importorskip("torch", reason="torch is optional: pip install 'memberlab[torch]'")
    from memberlab.choice import TorchMLPClassifier, TorchMLPRegressor

    g = np.random.default_rng(4)
    x = g.uniform(-3, 3, (3000, 1))
    p = 1 / (1 + np.exp(-2 * x[:, 0]))
    y = (g.random(3000) < p).astype(int)
    clf = TorchMLPClassifier(hidden_layer_sizes=(16,), random_state=0).fit(x, y)
    assert clf.n_iter_ < 200 and np.isfinite(clf.best_validation_loss_)
    assert np.abs(clf.predict_proba(x)[:, 1] - p).mean() < 0.05
    again = TorchMLPClassifier(hidden_layer_sizes=(16,), random_state=0).fit(x, y)
    np.testing.assert_array_equal(clf.predict_proba(x), again.predict_proba(x))
    # regression: y = sin(x) + noise (s.d. 0.1), weighted (measured RMSE 0.026)
    t = np.sin(x[:, 0]) + 0.1 * g.standard_normal(3000)
    reg = TorchMLPRegressor(hidden_layer_sizes=(32,), random_state=1).fit(
        x, t, sample_weight=np.full(3000, 2.0)
    )
    assert np.sqrt(np.mean((reg.predict(x) - np.sin(x[:, 0])) ** 2)) < 0.06
    # a target that is pure noise: the held-out MSE stops improving, training stops early
    noise = TorchMLPRegressor(hidden_layer_sizes=(32,), random_state=1).fit(
        x, g.standard_normal(3000)
    )
    assert noise.n_iter_ < 100 and np.abs(noise.predict(x)).max() < 0.5
    with pytest.raises(ValueError, match=r"validation_fraction == 1\.5"):
        TorchMLPRegressor(validation_fraction=1.5).fit(x, t)
    with pytest.raises(ValueError, match=r"backend == 'jax'"):
        deep_pqr(anchor="replace", discount=0.9, backend="jax")


def test_torch_backend_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch, ``backend="torch"`` says how to install it (torch hidden from import)."""
    import sys

    from memberlab._errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "torch", None)  # makes ``import torch`` fail
    with pytest.raises(MissingDependencyError, match=r'pip install "memberlab\[torch\]"'):
        deep_pqr(anchor="replace", discount=0.9, backend="torch")
