"""Results an econometrician would sign: summary, summary_frame, predict_proba, reprs.

Panels from :class:`MembershipEnv` (3,000 members x 12 months, seed 0) with the monthly
price as a state column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from memberlab import DataValidationError
from memberlab.choice import NFXP, ChoiceResults, Panel, TabularPQR, value_benefits

STATE = ["status", "months_left", "delivery", "video", "price_monthly"]


@pytest.fixture(scope="module")
def data(env):  # type: ignore[no-untyped-def]
    frame = env.simulate(3000, 12, rng=0)
    panel = Panel.from_frame(
        frame, id="member", time="month", state=STATE, action="action",
        actions=["none", "monthly", "annual"], feasible="feasible",
    )  # fmt: skip
    return frame, panel


@pytest.fixture(scope="module")
def nfxp(data):  # type: ignore[no-untyped-def]
    return NFXP(anchor="none", discount=0.97).fit(data[1])


def test_summary_frame_is_statsmodels_like(nfxp) -> None:  # type: ignore[no-untyped-def]
    f = nfxp.summary_frame()
    assert list(f.columns) == ["coef", "std_err", "z", "p_value", "ci_lower", "ci_upper"]
    assert list(f.index) == nfxp.param_names
    np.testing.assert_allclose(f["z"], f["coef"] / f["std_err"])
    np.testing.assert_allclose(f["p_value"], 2 * scipy.stats.norm.sf(np.abs(f["z"])))
    np.testing.assert_allclose(f["ci_upper"] - f["coef"], 1.959963984540054 * f["std_err"])
    assert np.isfinite(f["std_err"]).all()
    # truth: delivery 0.55, video 0.45 per unit for the monthly plan (tolerance 0.1)
    assert f.loc["monthly:delivery", "coef"] == pytest.approx(0.55, abs=0.1)
    assert f.loc["monthly:video", "coef"] == pytest.approx(0.45, abs=0.1)


def test_summary_text(nfxp) -> None:  # type: ignore[no-untyped-def]
    text = nfxp.summary()
    ll_c, ll_t = nfxp.loglik_parts()
    assert ll_c + ll_t == pytest.approx(nfxp.loglik)
    aic, bic = nfxp.information_criteria()
    k, n = len(nfxp.params), nfxp.n_obs
    assert aic == pytest.approx(2 * k - 2 * ll_c)
    assert bic == pytest.approx(k * np.log(n) - 2 * ll_c)
    for needle in (
        "coef", "std err", "P>|z|", "[95% interval]", "choices:", "transitions:", "AIC:",
        "BIC:", f"{n:,}", "Reference levels: status=annual", "monthly:status=none",
    ):  # fmt: skip
        assert needle in text, needle
    assert nfxp.info["reference_levels"] == {"status": "annual"}
    d = nfxp.summary_dict()
    assert d["aic"] == pytest.approx(aic) and d["loglik_choice"] == pytest.approx(ll_c)


def test_saved_results_keep_the_summary(nfxp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    nfxp.save(tmp_path / "m")
    back = ChoiceResults.load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.summary_frame(), nfxp.summary_frame())
    assert back.summary() == nfxp.summary()


def test_predict_proba_for_new_states(data, nfxp) -> None:  # type: ignore[no-untyped-def]
    frame, panel = data
    rows = frame.sample(50, random_state=1)
    p = nfxp.predict_proba(rows)
    assert list(p.columns) == ["none", "monthly", "annual"]
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    idx = panel.states.reset_index().merge(rows[STATE], on=STATE, how="right")["index"]
    np.testing.assert_allclose(p.to_numpy(), nfxp.policy[idx.to_numpy()])
    new = rows.head(2).copy()
    new.loc[new.index[1], "delivery"] = 7
    with pytest.raises(DataValidationError, match=r"'delivery': 7.*not among the 252 fitted"):
        nfxp.predict_proba(new)
    with pytest.raises(DataValidationError, match=r"\['video'\] not in states"):
        nfxp.predict_proba(rows.drop(columns=["video"]))


def test_tabular_summary_explains_missing_standard_errors(data) -> None:  # type: ignore[no-untyped-def]
    res = TabularPQR(anchor="none", discount=0.97, smoothing=0.5).fit(data[1])
    f = res.summary_frame()
    assert len(f) == res.n_params and f["std_err"].isna().all()
    assert f.index[0].startswith(("monthly | status=", "annual | status="))
    assert "no analytic standard errors" in res.summary()
    assert repr(res).startswith("<ChoiceResults: pqr-tabular on 252 states x 3 actions")


def test_value_benefits_has_no_wtp_for_the_price(data) -> None:  # type: ignore[no-untyped-def]
    res = TabularPQR(anchor="none", discount=0.97, smoothing=0.5).fit(data[1])
    val = value_benefits(
        res, action="monthly", features=["delivery", "video"], price="price_monthly"
    ).set_index("term")
    assert np.isnan(val.loc["price_monthly", ["wtp", "wtp_lower", "wtp_upper"]].astype(float)).all()
    assert np.isfinite(val.loc["delivery", ["wtp", "wtp_lower", "wtp_upper"]].astype(float)).all()


def test_singular_information_is_explained(data) -> None:  # type: ignore[no-untyped-def]
    """Two copies of the price column: NFXP cannot tell their coefficients apart; the
    standard errors are NaN with the reason, and converged is False."""
    frame, _ = data

    def feats(panel):  # type: ignore[no-untyped-def]
        pm = panel.states["price_monthly"].to_numpy(float)
        x = np.zeros((panel.n_states, 3, 3))
        x[:, 1, 0] = 1.0
        x[:, 1, 1] = pm
        x[:, 1, 2] = 2 * pm
        use = panel.feasible[:, :, None] & (panel.feasible.sum(1) > 1)[:, None, None]
        return np.where(use, x, 0.0), ["c", "p", "p2"]

    panel = Panel.from_frame(
        frame, id="member", time="month", state=STATE, action="action", feasible="feasible"
    )
    with pytest.warns(UserWarning, match="singular information matrix"):
        res = NFXP(anchor="none", discount=0.97, features=feats, start="zero").fit(panel)
    assert not res.converged
    assert np.isnan(res.se[1]) and np.isnan(res.se[2])
    assert "singular information matrix" in res.summary()


def test_reprs_say_what_an_object_is(data, nfxp) -> None:  # type: ignore[no-untyped-def]
    from memberlab.choice import counterfactual, price_shift

    assert repr(data[1]).startswith("<Panel: 36,000 decisions of 3,000 members on 252 states")
    assert "nfxp on 252 states" in repr(nfxp) and "converged" in repr(nfxp)
    ch = price_shift(nfxp, action="monthly", price="price_monthly", factor=1.1)
    assert repr(ch).startswith("PriceChange(action='monthly', price='price_monthly', factor=1.1")
    cf = counterfactual(nfxp, ch, months=2, n_members=100, rng=0)
    assert repr(cf).startswith("<CounterfactualResult: 2 months")
