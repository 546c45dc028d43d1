"""A price change moves utility through the price coefficient and revenue to the new price.

Truth: :class:`MembershipEnv` (seed 11 panel, 10,000 members x 20 months) re-solved with
the monthly reward lowered by ``alpha * 0.2 * price_monthly`` and members propagated
exactly from the panel's first-month states; revenue is what they pay (the monthly price
each month, the annual price at sign-up) at the NEW monthly price. ``price_monthly`` is a
money column (tens of currency units): 1.275, 1.5 or 1.8 by price tier.
"""

from __future__ import annotations

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.choice import (
    MembershipEnv,
    Panel,
    TabularPQR,
    counterfactual,
    price_coefficient,
    price_elasticities,
    price_shift,
    value_benefits,
)

STATE = ["status", "months_left", "delivery", "video", "price_monthly", "price_annual"]
MONTHS = 12


@pytest.fixture(scope="module")
def fitted(env):  # type: ignore[no-untyped-def]
    frame = env.simulate(10_000, 20, rng=11)
    panel = Panel.from_frame(
        frame,
        id="member",
        time="month",
        state=STATE,
        action="action",
        actions=["none", "monthly", "annual"],
        feasible="feasible",
    )
    res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(panel)
    return panel, res


def _truth(env: MembershipEnv, panel: Panel, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact shares (months, 3) and revenue per member (months,) at the new price."""
    idx = env.state_index(_tier(env, panel))
    init = np.bincount(idx[panel.first_states()], minlength=env.n_states).astype(float)
    shift = np.zeros((env.n_states, 3))
    pm = env.states["price_monthly"].to_numpy(dtype=float)
    shift[:, 1] = -env.theta[5] * (factor - 1.0) * pm
    pol = env.solve(env.rewards() + np.where(env.feasible, shift, 0.0)).policy
    price = np.zeros((env.n_states, 3))
    price[:, 1] = factor * pm
    price[:, 2] = env.states["price_annual"].to_numpy(dtype=float)
    price[env.feasible.sum(axis=1) == 1] = 0.0  # locked-in months are paid at sign-up
    dist = init / init.sum()
    shares, revenue = np.empty((MONTHS, 3)), np.empty(MONTHS)
    for t in range(MONTHS):
        joint = dist[:, None] * pol
        shares[t] = joint.sum(axis=0)
        revenue[t] = float((joint * price).sum())
        dist = np.einsum("sa,ast->t", joint, env.transitions)
    return shares, revenue


def _tier(env: MembershipEnv, panel: Panel):  # type: ignore[no-untyped-def]
    """The panel's states with the price tier recovered from the monthly price."""
    tiers = {round(env.monthly_price * m, 9): k for k, m in enumerate(env.price_tiers)}
    st = panel.states.copy()
    st["tier"] = [tiers[round(float(p), 9)] for p in st["price_monthly"]]
    return st


def test_price_rise_reproduces_true_shares_and_revenue(env, fitted) -> None:  # type: ignore[no-untyped-def]
    """+20% monthly price; 20,000 simulated members, seed 1.

    Tolerances: shares within 1.5 points in every month; revenue per member averaged over
    the 12 months within 4% of the truth (the old code, revenue at the old price, was
    about 20% low on the monthly plan's part).
    """
    panel, res = fitted
    val = value_benefits(
        res, action="monthly", features=["delivery", "video", "status"], price="price_monthly"
    )
    pc = float(val.loc[val["term"] == "price_monthly", "coef"].iloc[0])
    shift = price_shift(res, action="monthly", price="price_monthly", factor=1.2, price_coef=pc)
    prices = {"monthly": "price_monthly", "annual": "price_annual"}
    cf = counterfactual(res, shift, months=MONTHS, n_members=20_000, prices=prices, rng=1)
    shares, revenue = _truth(env, panel, 1.2)
    pred = cf.shares.pivot(index="month", columns="action", values="counterfactual")
    pred = pred[["none", "monthly", "annual"]].to_numpy()
    assert np.abs(pred - shares).max() < 0.015, np.abs(pred - shares).max()
    rev = cf.metrics[cf.metrics["scenario"] == "counterfactual"]["revenue"].to_numpy()
    assert rev.mean() == pytest.approx(revenue.mean(), rel=0.04), (rev.mean(), revenue.mean())
    # the baseline is the environment at the old price
    _, base_rev = _truth(env, panel, 1.0)
    b = cf.metrics[cf.metrics["scenario"] == "baseline"]["revenue"].to_numpy()
    assert b.mean() == pytest.approx(base_rev.mean(), rel=0.04), (b.mean(), base_rev.mean())


def test_price_change_with_the_estimated_coefficient(env, fitted) -> None:  # type: ignore[no-untyped-def]
    """``price_change={"monthly": 1.2}``: the coefficient from :func:`price_coefficient`
    (the collinear ``price_annual`` column is left out of its regression; truth -1).

    Same panel and tolerances as above (10,000 members simulated, seed 2)."""
    panel, res = fitted
    pc = price_coefficient(res, action="monthly", price="price_monthly")
    assert pc == pytest.approx(-env.theta[5], abs=0.1)
    prices = {"monthly": "price_monthly", "annual": "price_annual"}
    cf = counterfactual(res, price_change={"monthly": 1.2}, prices=prices, months=MONTHS, rng=2)
    assert cf.info["price_changes"][0]["price_coef"] == pytest.approx(pc)
    shares, revenue = _truth(env, panel, 1.2)
    pred = cf.shares.pivot(index="month", columns="action", values="counterfactual")
    assert np.abs(pred[["none", "monthly", "annual"]].to_numpy() - shares).max() < 0.015
    months = cf.months_frame()
    assert months["revenue_counterfactual"].mean() == pytest.approx(revenue.mean(), rel=0.04)
    # churn in month 0 counts members who start on a plan and leave
    assert months.loc[0, "churn_baseline"] > 0.05
    assert months.loc[0, "churn_counterfactual"] > months.loc[0, "churn_baseline"]


def test_price_change_needs_a_state_column(fitted) -> None:  # type: ignore[no-untyped-def]
    _, res = fitted
    with pytest.raises(DataValidationError, match="needs its price"):
        counterfactual(res, price_change={"monthly": 1.2}, months=2, n_members=10)
    with pytest.raises(DataValidationError, match=r"fixed amount 15\.0"):
        counterfactual(
            res, price_change={"monthly": 1.2}, prices={"monthly": 15.0}, months=2, n_members=10
        )
    with pytest.raises(DataValidationError, match="'cost' is not a state column"):
        counterfactual(
            res, price_change={"monthly": 1.2}, prices={"monthly": "cost"}, months=2, n_members=10
        )
    with pytest.raises(DataValidationError, match=r"factor == -1\.0"):
        price_shift(res, action="monthly", price="price_monthly", factor=-1.0, price_coef=-1.0)
    with pytest.raises(DataValidationError, match="non-finite"):
        counterfactual(res, {"monthly": float("nan")}, months=2, n_members=10)


def test_elasticities_agree_with_the_truth(env, fitted) -> None:  # type: ignore[no-untyped-def]
    """Month-11 elasticity of the monthly share to its own price: within 0.15 of the truth
    (the environment's exact elasticity by the same central difference)."""
    panel, res = fitted
    el = price_elasticities(res, action="monthly", price="price_monthly", months=12)
    row = el[(el["month"] == 11) & (el["action"] == "monthly")].iloc[0]
    lo, hi = _truth(env, panel, 1.01)[0], _truth(env, panel, 0.99)[0]
    true_el = (np.log(lo[11, 1]) - np.log(hi[11, 1])) / (np.log(1.01) - np.log(0.99))
    assert true_el < -1
    assert row["elasticity"] == pytest.approx(true_el, abs=0.15), (row["elasticity"], true_el)


def test_price_matrix_is_what_members_pay(fitted) -> None:  # type: ignore[no-untyped-def]
    from memberlab.choice import price_matrix

    _, res = fitted
    pm = price_matrix(res, {"monthly": "price_monthly", "annual": 14.0})
    locked = res.feasible.sum(axis=1) == 1
    assert (pm[locked] == 0).all() and (pm[:, 0] == 0).all()
    np.testing.assert_allclose(pm[~locked, 1], res.states["price_monthly"][~locked])
    assert (pm[~locked, 2] == 14.0).all()
    with pytest.raises(DataValidationError, match="must be finite"):
        price_matrix(res, {"annual": float("inf")})
