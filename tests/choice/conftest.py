from __future__ import annotations

import pandas as pd
import pytest

from memberlab.choice import MembershipEnv, Panel

STATE = ["status", "months_left", "delivery", "video", "tier"]
ACTIONS = ["none", "monthly", "annual"]


def env_panel(frame: pd.DataFrame) -> Panel:
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
def env() -> MembershipEnv:
    return MembershipEnv()


@pytest.fixture(scope="session")
def make_panel():  # type: ignore[no-untyped-def]
    return env_panel


@pytest.fixture(scope="session")
def state_cols() -> list[str]:
    return list(STATE)
