"""Multivariate layout optimisation: Thompson sampling with pairwise interactions.

A layout picks one variant for each slot of a callout (headline, image, ...). The
policy scores layouts with a probit model of main effects, pairwise interactions and
context terms, draws weights from the posterior and serves the best layout under the
draw, found by hill climbing (or enumeration on small spaces). Hill et al., "An
Efficient Bandit Algorithm for Realtime Multivariate Optimization", KDD 2017.
"""

from memberlab.layouts.baselines import BetaPerLayout, BetaPerSlot
from memberlab.layouts.features import GROUPS, FeatureMap
from memberlab.layouts.policy import (
    DEFAULT_PRIORS,
    SNAPSHOT_SCHEMA_VERSION,
    LayoutDecision,
    LayoutPolicy,
    LeaderboardEntry,
)
from memberlab.layouts.regret import POLICIES, RegretTrace, make_learner, plot_regret, run_regret
from memberlab.layouts.simulate import (
    LayoutSimulator,
    basin_layouts,
    basin_model,
    random_pairwise_model,
)
from memberlab.layouts.space import LayoutSpace

__all__ = [
    "DEFAULT_PRIORS",
    "GROUPS",
    "POLICIES",
    "SNAPSHOT_SCHEMA_VERSION",
    "BetaPerLayout",
    "BetaPerSlot",
    "FeatureMap",
    "LayoutDecision",
    "LayoutPolicy",
    "LayoutSimulator",
    "LayoutSpace",
    "LeaderboardEntry",
    "RegretTrace",
    "basin_layouts",
    "basin_model",
    "make_learner",
    "plot_regret",
    "random_pairwise_model",
    "run_regret",
]
