from __future__ import annotations

import pytest

from memberlab.choice import MembershipEnv, Panel

STATE = ["status", "months_left", "delivery", "video", "tier", "price_monthly", "price_annual"]
ACTIONS = ["none", "monthly", "annual"]


@pytest.fixture(scope="session")
def env() -> MembershipEnv:
    return MembershipEnv()


@pytest.fixture(scope="session")
def large_panel(env: MembershipEnv) -> Panel:
    """40,000 members x 24 months (960,000 member-months), seed 1."""
    frame = env.simulate(40_000, 24, rng=1)
    return Panel.from_frame(
        frame,
        id="member",
        time="month",
        state=STATE,
        action="action",
        actions=ACTIONS,
        feasible="feasible",
    )


@pytest.fixture(scope="session")
def pqr_large(env: MembershipEnv, large_panel: Panel):  # type: ignore[no-untyped-def]
    """TabularPQR (smoothing 0.5) fitted on ``large_panel``."""
    from memberlab.choice import TabularPQR

    return TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(large_panel)
