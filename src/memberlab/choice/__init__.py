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

from typing import TYPE_CHECKING

from memberlab._lazy import attach

# Names load their module on first use (memberlab._lazy): importing the package costs
# nothing until an estimator, the environment or a counterfactual is asked for.
__getattr__, __dir__ = attach(__name__, __file__)

if TYPE_CHECKING:
    from memberlab.choice._bootstrap import BootstrapResults, bootstrap_replicates, load_bootstrap
    from memberlab.choice._bus import BusEnv
    from memberlab.choice._counterfactual import (
        Changes,
        CounterfactualResult,
        PriceChange,
        bootstrap,
        counterfactual,
        parse_changes,
        price_coefficient,
        price_elasticities,
        price_matrix,
        price_shift,
        propagate_shares,
        reward_intervals,
        reward_shift,
        value_benefits,
    )
    from memberlab.choice._deep import deep_pqr
    from memberlab.choice._defaults import DEFAULT_ALPHA, DEFAULT_MEMBERS, DEFAULT_MONTHS
    from memberlab.choice._env import MembershipEnv, sample_next
    from memberlab.choice._estimators import ESTIMATORS, make_estimator
    from memberlab.choice._panel import Panel, apply_bins, estimate_transitions, read_panel
    from memberlab.choice._parametric import CCP, NFXP, linear_features
    from memberlab.choice._pqr import PQR, StructuralPQR, TabularPQR, pqr_tabular
    from memberlab.choice._results import SCHEMA_VERSION, ChoiceResults
    from memberlab.choice._rust import (
        RustData,
        RustPQR,
        RustResults,
        fit_rust,
        load_rust_bus,
        rust_pqr,
        rust_states,
        simulate_rust,
    )
    from memberlab.choice._solve import Solution, solve_values
    from memberlab.choice._torch import TorchMLPClassifier, TorchMLPRegressor

__all__ = [
    "CCP",
    "DEFAULT_ALPHA",
    "DEFAULT_MEMBERS",
    "DEFAULT_MONTHS",
    "ESTIMATORS",
    "NFXP",
    "PQR",
    "SCHEMA_VERSION",
    "BootstrapResults",
    "BusEnv",
    "Changes",
    "ChoiceResults",
    "CounterfactualResult",
    "MembershipEnv",
    "Panel",
    "PriceChange",
    "RustData",
    "RustPQR",
    "RustResults",
    "Solution",
    "StructuralPQR",
    "TabularPQR",
    "TorchMLPClassifier",
    "TorchMLPRegressor",
    "apply_bins",
    "bootstrap",
    "bootstrap_replicates",
    "counterfactual",
    "deep_pqr",
    "estimate_transitions",
    "fit_rust",
    "linear_features",
    "load_bootstrap",
    "load_rust_bus",
    "make_estimator",
    "parse_changes",
    "pqr_tabular",
    "price_coefficient",
    "price_elasticities",
    "price_matrix",
    "price_shift",
    "propagate_shares",
    "read_panel",
    "reward_intervals",
    "reward_shift",
    "rust_pqr",
    "rust_states",
    "sample_next",
    "simulate_rust",
    "solve_values",
    "value_benefits",
]
