"""Member value: known truth on the membership environment, exactness, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memberlab.choice import CCP, NFXP, PQR, MembershipEnv, Panel, TabularPQR, bootstrap
from memberlab.value import (
    ENV_PRICES,
    StateColumnError,
    member_values,
    true_results,
)


@pytest.fixture(scope="module")
def truth_values(env: MembershipEnv):  # type: ignore[no-untyped-def]
    return member_values(true_results(env), prices=ENV_PRICES, horizon=24)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: TabularPQR(anchor="none", discount=d, smoothing=0.5),
        lambda d: CCP(anchor="none", discount=d),
        lambda d: NFXP(anchor="none", discount=d),
        lambda d: PQR(anchor="none", discount=d, rng=0),
    ],
    ids=["pqr", "ccp", "nfxp", "pqr-fa"],
)
def test_fitted_value_matches_truth(env, large_panel, pqr_large, truth_values, make) -> None:  # type: ignore[no-untyped-def]
    """Per state and plan, fitted member value within 10% + 0.1 of the true one.

    Panel: 40,000 members x 24 months, seed 1. Checked on every (state, plan) where the
    plan and the anchor were each chosen at least 30 times (a plan never chosen in a
    state has no estimated transition there). Measured (seed 1, 85 pairs): max error
    0.26-0.29 money units against values of sd 2.8, max relative error 6-7%, RMSE 0.074.
    """
    est = make(env.discount)
    res = pqr_large if isinstance(est, TabularPQR) else est.fit(large_panel)
    mv = member_values(res, prices=ENV_PRICES, horizon=24)
    true = truth_values.values[env.state_index(res.states)]
    sup = (res.counts >= 30) & (res.counts[:, [0]] >= 30)
    sup[:, 0] = False
    assert sup.sum() >= 70
    err = np.abs(mv.values[sup] - true[sup])
    assert np.all(err <= 0.10 * np.abs(true[sup]) + 0.1), err.max()
    assert np.sqrt(np.mean(err**2)) < 0.12
    # values are large enough that the tolerance means something
    assert np.abs(true[sup]).mean() > 2.0


def test_exact_equals_brute_force(env: MembershipEnv) -> None:
    """The recursion against explicit matrix powers, horizon 5, undiscounted-by-default."""
    res = true_results(env)
    mv = member_values(res, prices=ENV_PRICES, horizon=5, discount=0.9)
    pol = res.solve().policy
    choice = res.feasible.sum(axis=1) > 1
    pay = np.zeros(res.rewards.shape)
    pay[:, 1] = res.states["price_monthly"] * choice
    pay[:, 2] = res.states["price_annual"] * choice
    m = (pol * pay).sum(axis=1)
    p_pi = np.einsum("sa,ast->st", pol, res.transitions)
    want = np.empty_like(pay)
    for a in range(3):
        d = res.transitions[a]
        tot = pay[:, a].copy()
        for t in range(1, 5):
            tot += 0.9**t * d @ m
            d = d @ p_pi
        want[:, a] = tot
    want = np.where(res.feasible, want, np.nan)
    np.testing.assert_allclose(mv.revenue, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mv.values, want - want[:, [0]], rtol=1e-12, atol=1e-12)


def test_horizon_one_is_the_price_and_infinite_is_the_limit(env: MembershipEnv) -> None:
    res = true_results(env)
    one = member_values(res, prices=ENV_PRICES, horizon=1)
    ok = res.feasible.sum(axis=1) > 1
    np.testing.assert_allclose(one.values[ok, 1], res.states["price_monthly"][ok])
    inf = member_values(res, prices=ENV_PRICES, horizon=None)
    long = member_values(res, prices=ENV_PRICES, horizon=2000)
    np.testing.assert_allclose(long.values, inf.values, rtol=1e-9, atol=1e-9)


def test_simulation_agrees_with_exact(env: MembershipEnv) -> None:
    """Seeded simulation (seed 3, 4,000 members per state and plan) within 5 s.e."""
    res = true_results(env)
    states = res.states[res.feasible.sum(axis=1) > 1].iloc[::3].reset_index(drop=True)
    exact = member_values(res, prices=ENV_PRICES, horizon=12).plan_values(states)
    sim_mv = member_values(
        res, prices=ENV_PRICES, horizon=12, method="simulate", states=states, n_members=4000, rng=3
    )
    sim = sim_mv.plan_values(states)
    ok = np.isfinite(exact)
    assert ok[:, 1:].sum() >= 20
    # revenue over 12 months is bounded by 12 * max price; 5 s.e. of a mean of 4,000
    # members with s.d. at most ~ 25 is about 2; the bound used is far tighter in practice
    assert np.max(np.abs(sim[ok] - exact[ok])) < 0.5
    again = member_values(
        res, prices=ENV_PRICES, horizon=12, method="simulate", states=states, n_members=4000, rng=3
    ).plan_values(states)
    np.testing.assert_array_equal(np.nan_to_num(sim), np.nan_to_num(again))


def test_fixed_amount_prices_and_discount(env: MembershipEnv) -> None:
    res = true_results(env)
    a = member_values(res, prices={"monthly": 1.5, "annual": 14.0}, horizon=12)
    b = member_values(res, prices={"monthly": 1.5, "annual": 14.0}, horizon=12, discount=0.5)
    assert a.discount == env.discount and b.discount == 0.5
    assert not np.allclose(np.nan_to_num(a.values), np.nan_to_num(b.values))
    # doubling every price doubles every value
    c = member_values(res, prices={"monthly": 3.0, "annual": 28.0}, horizon=12)
    np.testing.assert_allclose(np.nan_to_num(c.values), 2 * np.nan_to_num(a.values))


def test_reward_shift_changes_behaviour_and_value(env: MembershipEnv) -> None:
    """When no one would ever choose a plan again, a plan now is worth its price only."""
    res = true_results(env)
    base = member_values(res, prices=ENV_PRICES, horizon=24)
    gone = member_values(res, prices=ENV_PRICES, horizon=24, shift={"monthly": -30, "annual": -30})
    ok = res.feasible.sum(axis=1) > 1
    np.testing.assert_allclose(gone.values[ok, 1], res.states["price_monthly"][ok], atol=1e-6)
    np.testing.assert_allclose(gone.values[ok, 2], res.states["price_annual"][ok], atol=1e-6)
    assert np.all(base.values[ok, 1] > gone.values[ok, 1])


def test_bootstrap_intervals(env: MembershipEnv) -> None:
    """Replicates (8 bootstrap refits, seed 4) give intervals around the estimate."""
    frame = env.simulate(3000, 12, rng=2)
    panel = Panel.from_frame(
        frame,
        id="member",
        time="month",
        state=["status", "months_left", "delivery", "video", "tier", "price_monthly"],
        action="action",
        actions=["none", "monthly", "annual"],
        feasible="feasible",
    )
    est = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5)
    res = est.fit(panel)
    reps = bootstrap(est.fit, panel, n_boot=8, rng=4)
    mv = member_values(
        res, prices={"monthly": "price_monthly", "annual": 14.0}, horizon=12, replicates=reps
    )
    assert mv.lower is not None and mv.upper is not None
    ok = np.isfinite(mv.values[:, 1:])
    lo, hi = mv.lower[:, 1:][ok], mv.upper[:, 1:][ok]
    assert np.all(lo <= hi)
    assert np.mean(hi - lo) > 0
    tab = mv.frame()
    assert {"lower", "upper", "value", "plan", "revenue"} <= set(tab.columns)


def test_states_at_once_and_errors(env: MembershipEnv) -> None:
    res = true_results(env)
    mv = member_values(res, prices=ENV_PRICES, horizon=6)
    some = res.states.sample(15, random_state=0)
    np.testing.assert_array_equal(
        np.nan_to_num(mv.plan_values(some)), np.nan_to_num(mv.values[some.index.to_numpy()])
    )
    one = dict(some.iloc[0])
    assert mv.plan_values(one).shape == (1, 3)
    # numbers match by value, as a JSON client may send them
    as_float = {k: float(v) if isinstance(v, int | np.integer) else v for k, v in one.items()}
    assert mv.code_of(as_float) == mv.code_of(one) == some.index[0]
    with pytest.raises(StateColumnError, match="'video'") as e:
        mv.plan_values(some.drop(columns="video"))
    assert isinstance(e.value, ValueError) and e.value.column == "video"
    bad = some.copy()
    bad["delivery"] = 7
    with pytest.raises(StateColumnError, match="'delivery' == 7 "):
        mv.plan_values(bad)
    with pytest.raises(ValueError, match="horizon"):
        member_values(res, prices=ENV_PRICES, horizon=0)
    with pytest.raises(ValueError, match="column 'nope' is not a state column"):
        member_values(res, prices={"monthly": "nope"})
    with pytest.raises(ValueError, match="method"):
        member_values(res, prices=ENV_PRICES, method="magic")
    frame = pd.DataFrame(mv.frame())
    assert set(frame["plan"]) == {"monthly", "annual"}


def test_simulation_with_a_step_function(env: MembershipEnv) -> None:
    """Results without a transition model, simulated with the environment's own sampler
    (seed 6, 3,000 members per state and plan), agree with the exact values within 0.5."""
    from dataclasses import replace

    from memberlab.choice import sample_next

    res = true_results(env)
    states = res.states[res.feasible.sum(axis=1) > 1].iloc[::6].reset_index(drop=True)
    exact = member_values(res, prices=ENV_PRICES, horizon=10).plan_values(states)
    bare = replace(res, transitions=np.zeros((3, 0, 0)), policy=res.solve().policy)
    with pytest.raises(ValueError, match="no transition model"):
        member_values(bare, prices=ENV_PRICES, horizon=10)

    def step(s, a, rng):  # type: ignore[no-untyped-def]
        return sample_next(env.transitions, a, s, rng.random(len(s)))

    sim = member_values(
        bare, prices=ENV_PRICES, horizon=10, step=step, states=states, n_members=3000, rng=6
    )
    assert sim.method == "simulate"
    got = sim.plan_values(states)
    ok = np.isfinite(exact)
    assert np.max(np.abs(got[ok] - exact[ok])) < 0.5
    with pytest.raises(ValueError, match="step returned"):
        member_values(
            bare,
            prices=ENV_PRICES,
            horizon=3,
            step=lambda s, a, rng: s[:1],
            states=states,
            n_members=10,
        )


def test_conversion_values_are_rewards(env: MembershipEnv) -> None:
    res = true_results(env)
    mv = member_values(res, prices=ENV_PRICES, horizon=12)
    some = res.states.iloc[[0, 1, 2]]
    got = mv.conversion_values(some, ["monthly", None, "annual"])
    np.testing.assert_allclose(got, [mv.values[0, 1], 0.0, mv.values[2, 2]])
    with pytest.raises(ValueError, match="plan 'gold'"):
        mv.conversion_values(some, ["gold", None, None])
    with pytest.raises(ValueError, match="must match"):
        mv.conversion_values(some, [None])
