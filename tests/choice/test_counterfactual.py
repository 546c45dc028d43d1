"""Counterfactuals, valuation, bootstrap and persistence on the membership environment."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from memberlab import SchemaVersionError
from memberlab.choice import (
    PQR,
    ChoiceResults,
    Panel,
    TabularPQR,
    bootstrap,
    counterfactual,
    price_shift,
    propagate_shares,
    reward_intervals,
    value_benefits,
)

STATE_P = ["status", "months_left", "delivery", "video", "tier", "price_monthly"]


def _panel(frame: pd.DataFrame) -> Panel:
    return Panel.from_frame(
        frame,
        id="member",
        time="month",
        state=STATE_P,
        action="action",
        actions=["none", "monthly", "annual"],
        feasible="feasible",
    )


@pytest.fixture(scope="module")
def big(env):  # type: ignore[no-untyped-def]
    """200,000 member-months: 10,000 members x 20 months, seed 11."""
    return _panel(env.simulate(10_000, 20, rng=11))


def _predict(res: ChoiceResults, panel: Panel, months: int = 13) -> np.ndarray:
    val = value_benefits(
        res, action="monthly", features=["delivery", "video", "status"], price="price_monthly"
    )
    pc = float(val.loc[val["term"] == "price_monthly", "coef"].iloc[0])
    shift = price_shift(res, action="monthly", price="price_monthly", factor=1.2, price_coef=pc)
    init = np.bincount(panel.first_states(), minlength=panel.n_states).astype(float)
    return propagate_shares(
        res.solve(res.rewards + shift.reward_shift(res)).policy, res.transitions, init, months
    )


def test_price_counterfactual_fa_pqr_vs_myopic(env, big) -> None:  # type: ignore[no-untyped-def]
    """+20% monthly price: plan shares after 12 months within 1.5 points of the truth.

    Truth: the environment re-solved with the monthly reward lowered by alpha * 0.2 *
    price, shares propagated exactly from the same first-month states. The model: FA-PQR
    (default learners, rng=0), price coefficient from ``value_benefits``, re-solved on
    frequency transitions. A myopic model (discount 0) misses by more than the tolerance.
    """
    m = env.state_index(big.states)
    init = np.bincount(m[big.first_states()], minlength=env.n_states).astype(float)
    shift = np.zeros((env.n_states, 3))
    shift[:, 1] = -env.theta[5] * 0.2 * env.states["price_monthly"].to_numpy()
    truth = propagate_shares(
        env.solve(env.rewards() + np.where(env.feasible, shift, 0)).policy,
        env.transitions,
        init,
        13,
    )[12]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = PQR(anchor="none", discount=env.discount, rng=0).fit(big)
        myopic = PQR(anchor="none", discount=0.0, rng=0).fit(big)
    err_fa = 100 * np.abs(_predict(fa, big)[12] - truth).max()
    err_my = 100 * np.abs(_predict(myopic, big)[12] - truth).max()
    assert err_fa < 1.5, err_fa
    assert err_my > 1.5, err_my


def test_value_benefits_recovers_price_and_wtp(env, big) -> None:  # type: ignore[no-untyped-def]
    res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(big)
    val = value_benefits(
        res,
        action="monthly",
        features=["delivery", "video", "status"],
        price="price_monthly",
        segment="tier",
    )
    assert set(val["segment"]) == {0, 1, 2}
    allv = value_benefits(
        res, action="monthly", features=["delivery", "video", "status"], price="price_monthly"
    )
    row = allv.set_index("term")
    # truth: alpha = 1, b_delivery = 0.55, b_video = 0.45 (in units of 10 currency units)
    assert row.loc["price_monthly", "coef"] == pytest.approx(-1.0, abs=0.1)
    assert row.loc["delivery", "wtp_lower"] < 0.55 < row.loc["delivery", "wtp_upper"]
    assert row.loc["video", "wtp_lower"] < 0.45 < row.loc["video", "wtp_upper"]


def test_counterfactual_tables_and_plot(env, big, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(big)
    cf = counterfactual(
        res,
        {"monthly": -0.3},
        months=6,
        n_members=2000,
        prices={"monthly": "price_monthly", "annual": 14.0},
        rng=0,
    )
    assert len(cf.shares) == 6 * 3
    sums = cf.shares.groupby("month")["counterfactual"].sum()
    np.testing.assert_allclose(sums, 1.0)
    assert (cf.shares["counterfactual_lower"] <= cf.shares["counterfactual"] + 1e-12).all()
    # a lower monthly reward lowers the monthly share
    assert cf.share_at(5, "monthly") < cf.share_at(5, "monthly", "baseline")
    assert set(cf.metrics["scenario"]) == {"baseline", "counterfactual"}
    png = cf.plot(tmp_path / "cf.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # reproducible with the same seed
    cf2 = counterfactual(res, {"monthly": -0.3}, months=6, n_members=2000, rng=0)
    pd.testing.assert_series_equal(cf.shares["counterfactual"], cf2.shares["counterfactual"])


def test_bootstrap_over_members(env) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(env.simulate(3000, 12, rng=4))
    est = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5)
    res = est.fit(panel)
    reps = bootstrap(est.fit, panel, n_boot=8, rng=0)
    lo, hi = reward_intervals(reps)
    f = panel.feasible
    assert (lo[f] <= hi[f]).all()
    inside = (lo[f] <= res.rewards[f] + 1e-9) & (res.rewards[f] <= hi[f] + 1e-9)
    assert inside.mean() > 0.5
    cf = counterfactual(res, {"annual": 0.2}, months=3, n_members=500, replicates=reps, rng=1)
    assert (cf.shares["difference_lower"] <= cf.shares["difference_upper"]).all()


def test_save_load_roundtrip(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(env.simulate(500, 8, rng=2))
    res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(panel)
    res.save(tmp_path / "m")
    back = ChoiceResults.load(tmp_path / "m")
    np.testing.assert_array_equal(back.rewards, res.rewards)
    np.testing.assert_array_equal(back.transitions, res.transitions)
    pd.testing.assert_frame_equal(back.states, res.states, check_dtype=False)
    assert back.actions == res.actions and back.anchor == "none"
    assert "pqr" in back.summary()
    meta = (
        (tmp_path / "m" / "results.json")
        .read_text()
        .replace('"schema_version": 1', '"schema_version": 99')
    )
    (tmp_path / "m" / "results.json").write_text(meta)
    with pytest.raises(SchemaVersionError, match="99"):
        ChoiceResults.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError):
        ChoiceResults.load(tmp_path / "nothing")


def test_benefit_for_a_segment(env, big) -> None:  # type: ignore[no-untyped-def]
    """A benefit worth 0.5 to heavy delivery users raises their plan shares; truth agrees."""
    res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(big)
    heavy = (res.states["delivery"] == 2).to_numpy()
    shift = {"monthly": 0.5 * heavy, "annual": 0.5 * heavy}
    cf = counterfactual(res, shift, months=12, n_members=20_000, rng=2)
    m = env.state_index(big.states)
    init = np.bincount(m[big.first_states()], minlength=env.n_states).astype(float)
    true_shift = np.zeros((env.n_states, 3))
    true_shift[:, 1:] = 0.5 * (env.states["delivery"] == 2).to_numpy()[:, None]
    base, truth = env.true_shares(init, 12, reward_shift=true_shift)
    pred = cf.shares[cf.shares["month"] == 11].set_index("action")
    for a, label in enumerate(["none", "monthly", "annual"]):
        assert abs(pred.loc[label, "counterfactual"] - truth[11, a]) < 0.02
    assert truth[11, 0] < base[11, 0]


def test_valuation_with_bootstrap_replicates(env) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(env.simulate(3000, 12, rng=6))
    est = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5)
    res = est.fit(panel)
    reps = bootstrap(est.fit, panel, n_boot=6, rng=1)
    val = value_benefits(
        res,
        action="monthly",
        features=["delivery", "video", "status"],
        price="price_monthly",
        replicates=reps,
    ).set_index("term")
    assert (val["coef_lower"] <= val["coef_upper"]).all()
    assert val.loc["price_monthly", "coef"] < 0
    assert val.loc["delivery", "wtp"] > 0


def test_calibrated_policy_runs(env) -> None:  # type: ignore[no-untyped-def]
    panel = _panel(env.simulate(2000, 10, rng=7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = PQR(anchor="none", discount=env.discount, calibration="sigmoid", rng=0).fit(panel)
    assert np.isfinite(res.rewards).all()
    assert res.estimator == "pqr-fa"
