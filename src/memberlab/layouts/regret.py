"""A batched regret harness for layout policies on simulators with known truth.

Each round serves one layout; the policy's posterior is updated every ``batch`` rounds
(Thompson sampling with delayed, batched feedback, as in Chapelle and Li, 2011). Regret
is the expected (pseudo-)regret ``p* - p(served layout)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
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


@dataclass(frozen=True, slots=True)
class RegretTrace:
    """One run of one policy.

    Attributes
    ----------
    cumulative_regret : ndarray of shape (n_batches,)
        Cumulative expected regret at the end of each batch.
    rounds : ndarray of shape (n_batches,)
        Round count at the end of each batch.
    final_layout : ndarray of shape (n_slots,)
        Most served layout over the last ``final_window`` rounds.
    at_optimum : bool
        Whether ``final_layout`` is the simulator's optimum.
    seconds : float
        Wall time of the run.
    """

    cumulative_regret: FloatArray
    rounds: IntArray
    final_layout: IntArray
    at_optimum: bool
    seconds: float

    @property
    def total(self) -> float:
        return float(self.cumulative_regret[-1]) if self.cumulative_regret.size else 0.0


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
        final_layout=final,
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


def plot_regret(
    traces: Mapping[str, Sequence[RegretTrace]], path: str | Path, *, title: str = ""
) -> Path:
    """Mean cumulative regret with a +-1 standard-error band per policy, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, runs in traces.items():
        if not runs:
            continue
        x = runs[0].rounds
        Y = np.stack([r.cumulative_regret for r in runs])
        m = Y.mean(axis=0)
        se = Y.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(m)
        ax.plot(x, m, label=name)
        ax.fill_between(x, m - se, m + se, alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative expected regret")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
