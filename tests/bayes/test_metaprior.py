"""Empirical-Bayes meta-prior estimators: recovery on known truth (issue 2).

Normal-normal toys: weight i of group g has true value theta_i ~ N(mu_g, tau_g^2) and is
measured ``n_i`` times with unit noise, so its likelihood message is N(m_i, 1/n_i). The
model is "trained" under a N(0, 1) prior (not the true one), and the estimators must
divide that prior back out.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlab import DataValidationError
from memberlab.bayes import SparseRows, metaprior, probit


def _trained_state(
    mus: list[float], tau2s: list[float], n_weights: int, n_obs: tuple[int, int], seed: int
) -> tuple[probit.ProbitState, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    means, vars_, gids = [], [], []
    for g, (mu, tau2) in enumerate(zip(mus, tau2s, strict=True)):
        theta = rng.normal(mu, np.sqrt(tau2), n_weights)
        n = rng.integers(n_obs[0], n_obs[1] + 1, n_weights)
        m = rng.normal(theta, 1.0 / np.sqrt(n))
        prec = 1.0 + n  # N(0, 1) prior times N(m, 1/n)
        means.append(m * n / prec)
        vars_.append(1.0 / prec)
        gids.append(np.full(n_weights, g))
    mean = np.concatenate(means)
    var = np.concatenate(vars_)
    state = probit.ProbitState(mean, var, np.zeros_like(mean), np.ones_like(mean))
    return state, np.concatenate(gids), [f"g{g}" for g in range(len(mus))]


def test_deconvolved_recovers_means_and_variances_within_10pct() -> None:
    # seed 0; 4000 weights per group, 20-200 observations each.
    mus, tau2s = [0.5, -1.0, 0.0], [0.04, 0.25, 1.0]
    state, gids, names = _trained_state(mus, tau2s, 4000, (20, 200), seed=0)
    fit = metaprior.fit_group_priors(state, gids, names, method="deconvolved")
    assert fit.converged
    for name, mu, tau2 in zip(names, mus, tau2s, strict=True):
        g = fit.groups[name]
        assert abs(g.var - tau2) <= 0.10 * tau2, (name, g.var, tau2)
        assert abs(g.mean - mu) <= 0.10 * np.sqrt(tau2), (name, g.mean, mu)  # 10% of an sd
        assert g.n_weights == 4000


def test_deconvolved_stays_honest_where_naive_is_inflated() -> None:
    # seed 1; true variance 0.002, each weight has 100-150 observations (noise var
    # 0.007-0.01, several times the signal): the naive variance mixes in the noise.
    mus, tau2s = [0.2, -0.3], [0.002, 0.002]
    state, gids, names = _trained_state(mus, tau2s, 2000, (100, 150), seed=1)
    dec = metaprior.fit_group_priors(state, gids, names, method="deconvolved")
    nai = metaprior.fit_group_priors(state, gids, names, method="naive")
    for name, tau2 in zip(names, tau2s, strict=True):
        assert 0.5 * tau2 <= dec.groups[name].var <= 2.0 * tau2
        assert nai.groups[name].var >= 4.0 * tau2  # off by much more


def test_deconvolved_on_probit_adf_shadow_model() -> None:
    # seed 2; a probit with a bias and two one-hot groups, 300 weights each with ~200
    # rows per weight; wide N(0, 1) shadow prior. ADF messages are approximate, so the
    # tolerance is a factor of 2; the naive estimate adds the measurement noise.
    rng = np.random.default_rng(2)
    n_per, n_rows = 300, 60_000
    tau2 = {"a": 0.01, "b": 0.04}
    theta_a = rng.normal(0, np.sqrt(tau2["a"]), n_per)
    theta_b = rng.normal(0, np.sqrt(tau2["b"]), n_per)
    a = rng.integers(0, n_per, n_rows)
    b = rng.integers(0, n_per, n_rows)
    z = -1.0 + theta_a[a] + theta_b[b]
    y = (z + rng.standard_normal(n_rows) > 0).astype(np.int64)
    rows = SparseRows.from_lists([[0, 1 + i, 1 + n_per + j] for i, j in zip(a, b, strict=True)])
    shadow = probit.update(probit.init(1 + 2 * n_per, prior_var=1.0), rows, y)
    gids = np.array([0] + [1] * n_per + [2] * n_per)
    names = ["bias", "a", "b"]
    dec = metaprior.fit_group_priors(shadow, gids, names, method="deconvolved", exclude=["bias"])
    nai = metaprior.fit_group_priors(shadow, gids, names, method="naive", exclude=["bias"])
    for g in ("a", "b"):
        assert 0.5 * tau2[g] <= dec.groups[g].var <= 2.0 * tau2[g], (g, dec.groups[g].var)
        assert nai.groups[g].var > dec.groups[g].var
    assert nai.groups["a"].var > 1.5 * tau2["a"]  # noise about as large as the signal


def test_priors_pins_means_and_prior_arrays() -> None:
    state, gids, names = _trained_state([0.5], [0.04], 500, (50, 60), seed=3)
    fit = metaprior.fit_group_priors(state, gids, names)
    pri = fit.priors(pin_mean=0.0)
    assert pri["g0"].mean == 0.0 and pri["g0"].var == pytest.approx(fit.groups["g0"].var)
    pm, pv = metaprior.prior_arrays(gids, names, pri, default=pri["g0"])
    assert pm.shape == pv.shape == gids.shape
    assert "g0" in fit.summary()


def test_fixed_mean_and_validation() -> None:
    state, gids, names = _trained_state([0.0], [0.1], 1000, (50, 60), seed=4)
    fit = metaprior.fit_group_priors(state, gids, names, fixed_means={"g0": 0.0})
    assert fit.groups["g0"].mean == 0.0
    with pytest.raises(DataValidationError, match="method"):
        metaprior.fit_group_priors(state, gids, names, method="mle")  # type: ignore[arg-type]
    with pytest.raises(DataValidationError, match="group_ids"):
        metaprior.fit_group_priors(state, gids[:-1], names)
    with pytest.raises(DataValidationError, match="min_var"):
        metaprior.deconvolved_prior(np.zeros(3), np.ones(3), min_var=1.0, max_var=0.5)


@settings(max_examples=50, deadline=None)
@given(
    m=st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=30),
    p=st.lists(st.floats(0, 1e12), min_size=30, max_size=30),
)
def test_no_nan_or_inf_for_extreme_messages(m: list[float], p: list[float]) -> None:
    mm = np.array(m)
    pp = np.array(p[: len(m)])
    g = metaprior.deconvolved_prior(mm, pp)
    if g.n_weights >= 2:
        assert np.isfinite(g.mean) and np.isfinite(g.var) and g.var > 0
    else:
        assert not g.converged


def test_upper_quantile_bounds_the_mle_from_above() -> None:
    state, gids, names = _trained_state([0.0], [0.01], 30, (20, 40), seed=5)
    mle = metaprior.fit_group_priors(state, gids, names).groups["g0"].var
    up = metaprior.fit_group_priors(state, gids, names, upper_quantile=0.84).groups["g0"].var
    assert up > mle
    with pytest.raises(DataValidationError, match="upper_quantile"):
        metaprior.deconvolved_prior(np.zeros(3), np.ones(3), upper_quantile=0.3)
