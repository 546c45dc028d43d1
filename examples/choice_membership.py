"""Fit PQR on simulated membership data and price a 20% monthly-price increase.

Run: ``.venv/bin/python examples/choice_membership.py`` (writes choice_membership.png).
"""

from __future__ import annotations

import numpy as np

from memberlab.choice import (
    PQR,
    MembershipEnv,
    Panel,
    price_shift,
    propagate_shares,
    value_benefits,
)


def main() -> None:
    env = MembershipEnv()
    frame = env.simulate(10_000, 20, rng=11)  # 200,000 member-months
    panel = Panel.from_frame(
        frame,
        id="member",
        time="month",
        action="action",
        feasible="feasible",
        state=["status", "months_left", "delivery", "video", "tier", "price_monthly"],
        actions=["none", "monthly", "annual"],
    )
    res = PQR(anchor="none", discount=env.discount, rng=0).fit(panel)
    print(res.summary())
    val = value_benefits(
        res, action="monthly", features=["delivery", "video", "status"], price="price_monthly"
    )
    print(val[["term", "coef", "wtp", "wtp_lower", "wtp_upper"]].to_string(index=False))
    pc = float(val.loc[val["term"] == "price_monthly", "coef"].iloc[0])
    shift = price_shift(res, action="monthly", price="price_monthly", factor=1.2, price_coef=pc)
    init = np.bincount(panel.first_states(), minlength=panel.n_states).astype(float)
    pred = propagate_shares(
        res.solve(res.rewards + shift.reward_shift(res)).policy, res.transitions, init, 13
    )
    # the truth, from the simulator
    idx = env.state_index(panel.states)
    true_shift = np.zeros((env.n_states, 3))
    true_shift[:, 1] = -env.theta[5] * 0.2 * env.states["price_monthly"].to_numpy()
    init_env = np.bincount(idx[panel.first_states()], minlength=env.n_states).astype(float)
    truth = propagate_shares(
        env.solve(env.rewards() + np.where(env.feasible, true_shift, 0.0)).policy,
        env.transitions,
        init_env,
        13,
    )
    for a, label in enumerate(panel.actions):
        print(f"{label:>8}: predicted {pred[12, a]:.3f}, true {truth[12, a]:.3f} after 12 months")


if __name__ == "__main__":
    main()
