"""Speed of member value and of value decisions, as ratios to baselines in the same run.

- Member value for every state and plan of the membership environment (252 states, 3
  actions, 24 months): the exact backward recursion against a per-state loop of explicit
  forward propagation (the straightforward way) and against seeded simulation (1,000
  members per state and plan).
- One decision on 8 callouts: ``ValueRecommender.decide`` (two plan models) with and
  without propensities (100 draws) against ``CalloutRecommender.decide`` on clicks.

    .venv/bin/python benchmarks/value_speed.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import single_thread_blas

single_thread_blas()

import numpy as np  # noqa: E402

from _common import print_banner, time_per_call  # noqa: E402
from memberlab.callouts import CalloutRecommender  # noqa: E402
from memberlab.value import (  # noqa: E402
    ENV_PRICES,
    ValueRecommender,
    ValueWorld,
    member_values,
    true_results,
)


def naive_values(res, horizon: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Forward propagation from each (state, plan) on its own."""
    pol = res.solve().policy
    choice = res.feasible.sum(axis=1) > 1
    pay = np.zeros(res.rewards.shape)
    pay[:, 1] = res.states["price_monthly"] * choice
    pay[:, 2] = res.states["price_annual"] * choice
    out = np.full(pay.shape, np.nan)
    for s in range(res.n_states):
        for a in range(3):
            if not res.feasible[s, a]:
                continue
            tot = pay[s, a]
            dist = res.transitions[a, s].copy()
            for t in range(1, horizon):
                joint = dist[:, None] * pol
                tot += res.discount**t * float((joint * pay).sum())
                dist = np.einsum("sa,ast->t", joint, res.transitions)
            out[s, a] = tot
    return out


def main() -> None:
    print_banner("value speed", ("memberlab", "numpy", "scipy"))
    world = ValueWorld(rng=0)
    assert world.env is not None
    res = true_results(world.env)
    exact = member_values(res, prices=ENV_PRICES, horizon=24)
    np.testing.assert_allclose(
        np.nan_to_num(exact.revenue), np.nan_to_num(naive_values(res, 24)), rtol=1e-9
    )
    t_exact = time_per_call(lambda: member_values(res, prices=ENV_PRICES, horizon=24))
    t_naive = time_per_call(lambda: naive_values(res, 24), min_time=1.0, repeats=2)
    t_sim = time_per_call(
        lambda: member_values(
            res, prices=ENV_PRICES, horizon=24, method="simulate", n_members=1000, rng=0
        ),
        min_time=1.0,
        repeats=2,
    )
    print("\nmember value, 252 states x 3 actions, 24 months")
    print(f"  exact recursion        {t_exact.seconds_per_call * 1e3:9.2f} ms   1.00x")
    print(
        f"  per-state propagation  {t_naive.seconds_per_call * 1e3:9.2f} ms   "
        f"{t_naive.seconds_per_call / t_exact.seconds_per_call:.0f}x slower"
    )
    print(
        f"  simulation (1,000)     {t_sim.seconds_per_call * 1e3:9.2f} ms   "
        f"{t_sim.seconds_per_call / t_exact.seconds_per_call:.0f}x slower"
    )

    crosses = [("delivery", "pitch"), ("status", "pitch")]
    value = ValueRecommender(catalog=world.catalog, values=exact, crosses=crosses, rng=0)
    click = CalloutRecommender(catalog=world.catalog, crosses=crosses, rng=0)
    ctx = world.context(int(world.shopper_states[3]))
    seeds = iter(range(10**9))
    t_click = time_per_call(lambda: click.decide(ctx, rng=next(seeds), with_propensity=False))
    t_click_p = time_per_call(lambda: click.decide(ctx, rng=next(seeds)))
    t_value = time_per_call(lambda: value.decide(ctx, rng=next(seeds), with_propensity=False))
    t_value_p = time_per_call(lambda: value.decide(ctx, rng=next(seeds)), min_time=1.0)
    print("\none decision, 8 callouts")
    for name, t in (
        ("click decide", t_click),
        ("click decide + propensity", t_click_p),
        ("value decide", t_value),
        ("value decide + propensity (100 draws)", t_value_p),
    ):
        print(
            f"  {name:<40}{t.micros:10.1f} us   "
            f"{t.seconds_per_call / t_click.seconds_per_call:6.1f}x"
        )


if __name__ == "__main__":
    main()
