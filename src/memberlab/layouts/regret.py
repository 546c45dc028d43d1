"""Layout policies by name, and their regret on simulators with known truth.

Each round serves one layout; the policy's posterior is updated every ``batch`` rounds
(Thompson sampling with delayed, batched feedback, as in Chapelle and Li, 2011). Regret
is the expected (pseudo-)regret ``p* - p(served layout)``. The run loop is the one
harness, :func:`memberlab.evaluation.harness.run`; :func:`run_regret` fills in the layout
conventions (regret at every batch end, the most served layout of the last rounds).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike
from memberlab._typing import IntArray
from memberlab.evaluation.harness import run
from memberlab.evaluation.regret import RegretTrace, plot_regret
from memberlab.layouts.baselines import BetaPerLayout, BetaPerSlot
from memberlab.layouts.policy import LayoutPolicy
from memberlab.layouts.simulate import BatchLearner, LayoutSimulator
from memberlab.layouts.space import LayoutSpace

__all__ = [
    "POLICIES",
    "BatchLearner",
    "RegretTrace",
    "ThompsonLearner",
    "make_learner",
    "plot_regret",
    "run_regret",
]


class ThompsonLearner:
    """Adapter of :class:`LayoutPolicy` to :class:`BatchLearner` (no context)."""

    def __init__(self, policy: LayoutPolicy) -> None:
        self.policy = policy

    def select(self, n: int, rng: np.random.Generator) -> IntArray:
        return self.policy.decide_batch(n, rng=rng)

    def learn(self, layouts: IntArray, rewards: IntArray) -> None:
        self.policy.update_indices(layouts, rewards)


def run_regret(
    sim: LayoutSimulator,
    learner: BatchLearner,
    *,
    rounds: int,
    batch: int = 500,
    final_window: int = 2000,
    rng: RNGLike = None,
    on_batch: Callable[[int], None] | None = None,
) -> RegretTrace:
    """Run ``learner`` for ``rounds`` rounds against ``sim`` (the loop is
    :func:`memberlab.evaluation.harness.run`, with regret kept at every batch end).

    Parameters
    ----------
    rounds : int
        Total rounds (>= 1).
    batch : int
        Rounds between posterior updates (>= 1).
    final_window : int
        Rounds at the end over which the most served layout is taken.
    on_batch : callable, optional
        Called with the number of rounds done after each batch (progress bars).
    """
    return run(
        sim,
        learner,
        rounds,
        batch=batch,
        n_checkpoints=None,
        final_window=final_window,
        rng=rng,
        progress=on_batch,
    )


POLICIES: tuple[str, ...] = ("mvt2", "mvt2-exact", "mvt1", "arm-per-layout", "per-slot")
"""Policy names understood by :func:`make_learner`."""


def make_learner(
    name: str,
    space: LayoutSpace,
    *,
    n_restarts: int = 4,
    rng: RNGLike = None,
) -> BatchLearner:
    """A fresh learner by name.

    ``mvt2``: pairwise probit model, hill climbing (never enumerates); ``mvt2-exact``:
    the same model with exact argmax by enumeration; ``mvt1``: main effects only (exact
    argmax, which is per-slot); ``arm-per-layout``: Beta-Bernoulli arm per layout;
    ``per-slot``: an independent Beta-Bernoulli bandit per slot.
    """
    if name == "mvt2":
        return ThompsonLearner(
            LayoutPolicy(
                space, exact_max_layouts=0, n_restarts=n_restarts, propensity_draws=0, rng=rng
            )
        )
    if name == "mvt2-exact":
        return ThompsonLearner(
            LayoutPolicy(space, exact_max_layouts=5_000_000, propensity_draws=0, rng=rng)
        )
    if name == "mvt1":
        return ThompsonLearner(
            LayoutPolicy(
                space.without_interactions(),
                exact_max_layouts=0,
                n_restarts=1,
                propensity_draws=0,
                rng=rng,
            )
        )
    if name == "arm-per-layout":
        return BetaPerLayout(space)
    if name == "per-slot":
        return BetaPerSlot(space)
    raise DataValidationError(f"policy == {name!r}, must be one of {list(POLICIES)}.")
