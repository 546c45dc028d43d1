"""A batched regret harness for layout policies on simulators with known truth.

Each round serves one layout; the policy's posterior is updated every ``batch`` rounds
(Thompson sampling with delayed, batched feedback, as in Chapelle and Li, 2011). Regret
is the expected (pseudo-)regret ``p* - p(served layout)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import IntArray
from memberlab.evaluation.regret import RegretTrace, plot_regret
from memberlab.layouts.baselines import BetaPerLayout, BetaPerSlot
from memberlab.layouts.policy import LayoutPolicy
from memberlab.layouts.simulate import LayoutSimulator
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


class BatchLearner(Protocol):
    """What the harness needs from a policy."""

    def select(self, n: int, rng: np.random.Generator) -> IntArray: ...

    def learn(self, layouts: IntArray, rewards: IntArray) -> None: ...


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
    """Run ``learner`` for ``rounds`` rounds against ``sim``.

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
    if rounds < 1:
        raise DataValidationError(f"rounds == {rounds}, must be >= 1.")
    if batch < 1:
        raise DataValidationError(f"batch == {batch}, must be >= 1.")
    gen = as_generator(rng)
    best, p_star = sim.optimum()
    t0 = time.perf_counter()
    cum, marks, total, done = [], [], 0.0, 0
    tail: list[IntArray] = []
    window_start = max(0, rounds - final_window)
    while done < rounds:
        n = min(batch, rounds - done)
        L = learner.select(n, gen)
        p = sim.expected_reward(L)
        r = (gen.random(n) < p).astype(np.int64)
        learner.learn(L, r)
        total += float(np.sum(p_star - p))
        if done + n > window_start:
            tail.append(L[max(0, window_start - done) :])
        done += n
        cum.append(total)
        marks.append(done)
        if on_batch is not None:
            on_batch(done)
    last = np.concatenate(tail)
    uniq, counts = np.unique(last, axis=0, return_counts=True)
    final = uniq[int(np.argmax(counts))]
    return RegretTrace(
        cumulative_regret=np.asarray(cum),
        rounds=np.asarray(marks, dtype=np.int64),
        final_choice=final,
        at_optimum=bool(np.array_equal(final, best)),
        seconds=time.perf_counter() - t0,
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
