"""Off-policy evaluation on logged decisions (IPS, SNIPS, DM, DR with intervals).

Regret harnesses against simulators live next to their simulators
(:func:`memberlab.callouts.simulator.run_policy`).
"""

from memberlab.evaluation.ope import (
    OBD_COLUMNS,
    OPEResult,
    direct_method,
    doubly_robust,
    estimate_all,
    ips,
    snips,
)

__all__ = [
    "OBD_COLUMNS",
    "OPEResult",
    "direct_method",
    "doubly_robust",
    "estimate_all",
    "ips",
    "snips",
]
