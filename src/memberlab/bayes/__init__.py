"""Posterior records and pure update/sample functions.

No HTTP, no storage, no items: only the mathematics of the learners that the callout and
layout policies share.
"""

from memberlab.bayes import metaprior, probit
from memberlab.bayes._sparse import SparseRows
from memberlab.bayes.beta import (
    BetaState,
    beta_decay,
    beta_init,
    beta_interval,
    beta_mean,
    beta_sample,
    beta_update,
)
from memberlab.bayes.groups import FeatureIndex, GroupPrior
from memberlab.bayes.metaprior import MetaPriorFit, fit_group_priors
from memberlab.bayes.persist import SCHEMA_VERSION, load_state, save_state
from memberlab.bayes.probit import ProbitState

__all__ = [
    "SCHEMA_VERSION",
    "BetaState",
    "FeatureIndex",
    "GroupPrior",
    "MetaPriorFit",
    "ProbitState",
    "SparseRows",
    "beta_decay",
    "beta_init",
    "beta_interval",
    "beta_mean",
    "beta_sample",
    "beta_update",
    "fit_group_priors",
    "load_state",
    "metaprior",
    "probit",
    "save_state",
]
