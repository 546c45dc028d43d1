"""Off-policy evaluation and experiment readouts on logged decisions.

- :class:`BanditDataset` and :func:`load_obd`: logged feedback from a DataFrame, a
  ``memberlab logs export`` file or the Open Bandit Dataset;
- :mod:`memberlab.evaluation.ope`: IPS, SNIPS, DM, DR, SNDR, Switch-DR and DR-OS on
  per-decision vectors, with normal, bootstrap and empirical-Bernstein intervals.

Regret against simulators with ground truth: one harness,
:func:`memberlab.evaluation.harness.run`, drives every simulator (the callouts, layouts
and value worlds) and returns one :class:`~memberlab.evaluation.regret.RegretTrace`;
:mod:`memberlab.evaluation.regret` summarises and plots traces.
"""

from typing import TYPE_CHECKING

from memberlab._lazy import attach

# Names load their module on first use (memberlab._lazy).
__getattr__, __dir__ = attach(__name__, __file__)

if TYPE_CHECKING:
    from memberlab.evaluation.dataset import (
        OBD_BEHAVIORS,
        OBD_CAMPAIGNS,
        BanditDataset,
        fetch_obd_wheel,
        load_obd,
    )
    from memberlab.evaluation.evaluate import OPEReport, evaluate, fit_reward_model
    from memberlab.evaluation.ope import (
        ESTIMATORS,
        OBD_COLUMNS,
        OPEResult,
        UntrustworthyEstimateWarning,
        canonical_estimator,
        direct_method,
        doubly_robust,
        estimate,
        estimate_all,
        ips,
        snips,
    )
    from memberlab.evaluation.policies import (
        FixedPolicy,
        LoggedPolicy,
        RecommenderPolicy,
        TargetPolicy,
        UniformPolicy,
    )

__all__ = [
    "ESTIMATORS",
    "OBD_BEHAVIORS",
    "OBD_CAMPAIGNS",
    "OBD_COLUMNS",
    "BanditDataset",
    "FixedPolicy",
    "LoggedPolicy",
    "OPEReport",
    "OPEResult",
    "RecommenderPolicy",
    "TargetPolicy",
    "UniformPolicy",
    "UntrustworthyEstimateWarning",
    "canonical_estimator",
    "direct_method",
    "doubly_robust",
    "estimate",
    "estimate_all",
    "evaluate",
    "fetch_obd_wheel",
    "fit_reward_model",
    "ips",
    "load_obd",
    "snips",
]
