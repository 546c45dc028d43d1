"""Membership choice: dynamic discrete choice and inverse reinforcement learning.

NFXP and CCP baselines, PQR with an anchor action (exact tabular and function
approximation), a membership environment with known rewards, counterfactual simulation
and Rust's (1987) bus-engine data.
"""

from memberlab.choice._rust import RustData, RustResults, fit_rust, load_rust_bus, rust_states
from memberlab.choice._solve import Solution, solve_values

__all__ = [
    "RustData",
    "RustResults",
    "Solution",
    "fit_rust",
    "load_rust_bus",
    "rust_states",
    "solve_values",
]
