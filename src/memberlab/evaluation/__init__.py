"""Off-policy evaluation and experiment readouts on logged decisions.

- :class:`BanditDataset` and :func:`load_obd`: logged feedback from a DataFrame, a
  ``memberlab logs export`` file or the Open Bandit Dataset;
- :mod:`memberlab.evaluation.ope`: IPS, SNIPS, DM, DR, SNDR, Switch-DR and DR-OS on
  per-decision vectors, with normal, bootstrap and empirical-Bernstein intervals.

Regret harnesses against simulators live next to their simulators
(:func:`memberlab.callouts.simulator.run_policy`).
"""

from memberlab.evaluation.dataset import (
    OBD_BEHAVIORS,
    OBD_CAMPAIGNS,
    BanditDataset,
    fetch_obd_wheel,
    load_obd,
)
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
    "OBD_BEHAVIORS",
    "OBD_CAMPAIGNS",
    "OBD_COLUMNS",
    "BanditDataset",
    "OPEResult",
    "direct_method",
    "doubly_robust",
    "estimate_all",
    "fetch_obd_wheel",
    "ips",
    "load_obd",
    "snips",
]
