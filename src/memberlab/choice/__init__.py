"""Membership choice: dynamic discrete choice and inverse reinforcement learning.

NFXP and CCP baselines, PQR with an anchor action (exact tabular and function
approximation), a membership environment with known rewards, counterfactual simulation
and Rust's (1987) bus-engine data.

>>> from memberlab.choice import MembershipEnv, Panel, TabularPQR
>>> env = MembershipEnv()
>>> frame = env.simulate(200, 12, rng=0)
>>> panel = Panel.from_frame(frame, id="member", time="month", action="action",
...     state=["status", "months_left", "delivery", "video", "tier"],
...     actions=["none", "monthly", "annual"], feasible="feasible")
>>> res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(panel)
>>> res.rewards.shape == (panel.n_states, 3)
True
"""

from memberlab.choice._bootstrap import BootstrapResults, bootstrap_replicates, load_bootstrap
from memberlab.choice._counterfactual import (
    CounterfactualResult,
    bootstrap,
    counterfactual,
    price_shift,
    propagate_shares,
    reward_intervals,
    reward_shift,
    value_benefits,
)
from memberlab.choice._env import MembershipEnv, sample_next
from memberlab.choice._panel import Panel, estimate_transitions, read_panel
from memberlab.choice._parametric import CCP, NFXP, linear_features
from memberlab.choice._pqr import PQR, TabularPQR, pqr_tabular
from memberlab.choice._results import SCHEMA_VERSION, ChoiceResults
from memberlab.choice._rust import (
    RustData,
    RustPQR,
    RustResults,
    fit_rust,
    load_rust_bus,
    rust_pqr,
    rust_states,
)
from memberlab.choice._solve import Solution, solve_values

__all__ = [
    "CCP",
    "NFXP",
    "PQR",
    "SCHEMA_VERSION",
    "BootstrapResults",
    "ChoiceResults",
    "CounterfactualResult",
    "MembershipEnv",
    "Panel",
    "RustData",
    "RustPQR",
    "RustResults",
    "Solution",
    "TabularPQR",
    "bootstrap",
    "bootstrap_replicates",
    "counterfactual",
    "estimate_transitions",
    "fit_rust",
    "linear_features",
    "load_bootstrap",
    "load_rust_bus",
    "pqr_tabular",
    "price_shift",
    "propagate_shares",
    "read_panel",
    "reward_intervals",
    "reward_shift",
    "rust_pqr",
    "rust_states",
    "sample_next",
    "solve_values",
    "value_benefits",
]
