"""Simulators with ground truth: the true click model is a probit over layout features.

The truth uses the same feature map as the learner (bias, main effects, pairwise terms),
so a learner with the right interactions is well specified and its recovery can be
tested; a main-effects-only learner is not. A :class:`LayoutSimulator` is a
:class:`memberlab.evaluation.harness.World` for any :class:`BatchLearner` (no context;
every layout of the space is a candidate; feedback at the end of each batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
from memberlab.evaluation.harness import Outcome
from memberlab.layouts.features import FeatureMap
from memberlab.layouts.space import LayoutSpace

__all__ = [
    "BatchLearner",
    "LayoutSimulator",
    "basin_layouts",
    "basin_model",
    "main_effects_anova",
    "random_pairwise_model",
]


class BatchLearner(Protocol):
    """A layout policy: what a :class:`LayoutSimulator` needs of it."""

    def select(self, n: int, rng: np.random.Generator) -> IntArray: ...

    def learn(self, layouts: IntArray, rewards: IntArray) -> None: ...


class _LearnerRun:
    """A :class:`BatchLearner` as the harness's batch policy (requests: their number)."""

    def __init__(self, learner: BatchLearner) -> None:
        self.learner = learner
        self.name: str = getattr(learner, "name", "") or type(learner).__name__

    def start(self, rng: np.random.Generator) -> None:
        return None

    def decide(self, requests: int, rng: np.random.Generator) -> IntArray:
        return self.learner.select(requests, rng)

    def update(self, feedback: Mapping[str, Any], t: int) -> None:
        self.learner.learn(feedback["layout"], feedback["reward"])


@dataclass(frozen=True)
class LayoutSimulator:
    """A layout space with known probit weights.

    Attributes
    ----------
    space : LayoutSpace
    weights : ndarray of shape (n_static,)
        True weights in :class:`~memberlab.layouts.features.FeatureMap` order.
    name : str
    """

    space: LayoutSpace
    weights: FloatArray
    name: str = "simulator"

    def __post_init__(self) -> None:
        n = FeatureMap(self.space).n_static
        if self.weights.shape != (n,):
            raise DataValidationError(f"weights has shape {self.weights.shape}, must be ({n},).")

    @property
    def fmap(self) -> FeatureMap:
        return FeatureMap(self.space)

    def latent(self, layouts: IntArray) -> FloatArray:
        """True latent score of each layout, (n, n_slots) -> (n,)."""
        idx = self.fmap.static_indices(np.asarray(layouts, dtype=np.int64))
        return np.asarray(self.weights[idx].sum(axis=1))

    def expected_reward(self, layouts: IntArray) -> FloatArray:
        """Click probability ``Phi(latent)`` of each layout, shape (n,)."""
        return np.asarray(special.ndtr(self.latent(layouts)))

    def sample_rewards(self, layouts: IntArray, rng: np.random.Generator) -> IntArray:
        """Bernoulli rewards, shape (n,)."""
        p = self.expected_reward(layouts)
        return (rng.random(p.shape[0]) < p).astype(np.int64)

    def optimum(self) -> tuple[IntArray, float]:
        """The best allowed layout and its click probability (by enumeration)."""
        L = self.space.all_layouts()
        L = L[~self.space.violations(L)]
        p = self.expected_reward(L)
        i = int(np.argmax(p))
        return L[i], float(p[i])

    # ------------------------------------------------ World (memberlab.evaluation.harness)
    reward_names: tuple[str, ...] = ("clicks",)

    @cached_property
    def _best(self) -> tuple[IntArray, float]:
        return self.optimum()

    def adapt(self, learner: BatchLearner) -> _LearnerRun:
        return _LearnerRun(learner)

    def start(self, n_rounds: int, rng: np.random.Generator) -> None:
        self._best  # noqa: B018 - enumerate the optimum before the clock matters

    def requests(self, start: int, stop: int, rng: np.random.Generator) -> int:
        return stop - start

    def expected(self, requests: int, actions: IntArray) -> FloatArray:
        return self.expected_reward(actions)[:, None]

    def best(self, requests: int) -> FloatArray:
        return np.full(requests, self._best[1])

    def realise(
        self, requests: int, actions: IntArray, expected: FloatArray, rng: np.random.Generator
    ) -> Outcome:
        r = (rng.random(requests) < expected[:, 0]).astype(np.int64)
        return Outcome(r.astype(np.float64), {"layout": actions, "reward": r})

    def is_optimal(self, action: IntArray) -> bool | None:
        return bool(np.array_equal(action, self._best[0]))

    def is_local_optimum(self, layout: IntArray) -> bool:
        """Whether no allowed single-slot change raises the click probability."""
        base = float(self.latent(np.asarray(layout)[None, :])[0])
        for d, n in enumerate(self.space.sizes.tolist()):
            nb = np.repeat(np.asarray(layout)[None, :], n, axis=0)
            nb[:, d] = np.arange(n)
            nb = nb[~self.space.violations(nb)]
            if np.any(self.latent(nb) > base + 1e-12):
                return False
        return True


def _space(n_slots: int, n_variants: int) -> LayoutSpace:
    if n_slots < 2:
        raise DataValidationError(f"n_slots == {n_slots}, must be >= 2.")
    if n_variants < 2:
        raise DataValidationError(f"n_variants == {n_variants}, must be >= 2.")
    return LayoutSpace({f"slot{d}": [f"v{v}" for v in range(n_variants)] for d in range(n_slots)})


def random_pairwise_model(
    space: LayoutSpace | None = None,
    *,
    n_slots: int = 4,
    n_variants: int = 3,
    bias: float = -1.5,
    main_scale: float = 0.15,
    pair_scale: float = 0.1,
    rng: RNGLike = None,
) -> LayoutSimulator:
    """Main effects ~ N(0, main_scale^2) and pairwise terms ~ N(0, pair_scale^2).

    Parameters
    ----------
    space : LayoutSpace, optional
        Default: ``n_slots`` slots of ``n_variants`` variants, all pairs interacting.
    bias : float
        Latent intercept; ``Phi(-1.5)`` is about 6.7%.
    """
    for name, val in (("main_scale", main_scale), ("pair_scale", pair_scale)):
        if not (val >= 0 and math.isfinite(val)):
            raise DataValidationError(f"{name} == {val}, must be a finite number >= 0.")
    sp = space if space is not None else _space(n_slots, n_variants)
    gen = as_generator(rng)
    fm = FeatureMap(sp)
    w = np.empty(fm.n_static)
    w[0] = bias
    w[1 : 1 + fm.n_main] = gen.normal(0.0, main_scale, fm.n_main)
    w[1 + fm.n_main :] = gen.normal(0.0, pair_scale, fm.n_pair_features)
    return LayoutSimulator(sp, w, name="pairwise")


def basin_model(
    *,
    n_slots: int = 5,
    n_variants: int = 4,
    bias: float = -1.5,
    main_gain: float = 0.2,
    pair_gain: float | None = None,
    jitter: float = 0.01,
    rng: RNGLike = None,
) -> LayoutSimulator:
    """A space whose best layout is reachable only through interactions.

    A layout ``A`` collects a main effect ``main_gain`` in every slot; a layout ``B``
    (different from ``A`` in every slot) has no main effects but a bonus ``pair_gain``
    for every pair of slots that both hold their ``B`` variant. A layout with ``k`` slots
    at ``B`` and the rest at ``A`` scores ``(n_slots - k) * main_gain + C(k, 2) *
    pair_gain``, which is convex in ``k``: ``A`` is a local optimum (every single-slot
    change loses ``main_gain`` and gains nothing), and ``B`` is the global optimum when
    ``C(n_slots, 2) * pair_gain > n_slots * main_gain``. Small ``jitter`` on all other
    terms breaks ties. The default ``pair_gain`` is 1.3 times that threshold, so ``B``
    beats ``A`` by 30% of ``A``'s lift (5 slots: 1.3 against 1.0 on the probit scale).

    Returns
    -------
    LayoutSimulator
        ``name == "basin"``; :func:`basin_layouts` gives ``A`` and ``B``.
    """
    sp = _space(n_slots, n_variants)
    if pair_gain is None:
        pair_gain = 1.3 * 2.0 * main_gain / (n_slots - 1)
    if not math.comb(n_slots, 2) * pair_gain > n_slots * main_gain:
        raise DataValidationError(
            f"pair_gain == {pair_gain}, must be > n_slots * main_gain / C(n_slots, 2) == "
            f"{n_slots * main_gain / math.comb(n_slots, 2):.4g} for the interactions to win."
        )
    if not (main_gain > 0 and pair_gain > 0 and jitter >= 0):
        raise DataValidationError("main_gain and pair_gain must be > 0 and jitter >= 0.")
    gen = as_generator(rng)
    fm = FeatureMap(sp)
    A = gen.integers(0, n_variants, n_slots)
    B = (A + gen.integers(1, n_variants, n_slots)) % n_variants
    w = gen.normal(0.0, jitter, fm.n_static)
    w[0] = bias
    w[fm.main_offset + A] += main_gain
    for p, (a, b) in enumerate(fm.pairs.tolist()):
        w[fm.pair_offset[p] + B[a] * n_variants + B[b]] += pair_gain
    sim = LayoutSimulator(sp, w, name="basin")
    best, _ = sim.optimum()
    if not np.array_equal(best, B) or not sim.is_local_optimum(A):
        raise DataValidationError(  # pragma: no cover - only with a very large jitter
            f"jitter == {jitter} is too large: the basin structure is lost; use a smaller one."
        )
    return sim


def basin_layouts(sim: LayoutSimulator) -> tuple[IntArray, IntArray]:
    """The main-effects optimum ``A`` and the global optimum ``B`` of a basin model."""
    fm = sim.fmap
    sizes = sim.space.sizes
    A = np.array(
        [
            int(np.argmax(sim.weights[fm.main_offset[d] : fm.main_offset[d] + sizes[d]]))
            for d in range(sim.space.n_slots)
        ],
        dtype=np.int64,
    )
    B, _ = sim.optimum()
    return A, B


def main_effects_anova(space: LayoutSpace, latent: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Identifiable effects of a score over all layouts (functional ANOVA, uniform weights).

    Parameters
    ----------
    latent : ndarray of shape (n_layouts,)
        Score of every layout in code order (see :meth:`LayoutSpace.all_layouts`).

    Returns
    -------
    main : ndarray of shape (M,)
        ``E[score | slot d = v] - E[score]`` per (slot, variant) in feature order.
    pair : ndarray of shape (n_pair_features,)
        Interaction ``E[score | d = v, e = w] - main_d(v) - main_e(w) - E[score]`` per
        pairwise feature.
    """
    sizes = tuple(int(s) for s in space.sizes)
    S = np.asarray(latent, dtype=np.float64).reshape(sizes)
    D = len(sizes)
    grand = float(S.mean())
    mains = []
    for d in range(D):
        axes = tuple(x for x in range(D) if x != d)
        mains.append(S.mean(axis=axes) - grand)
    pairs = []
    for a, b in space.pairs.tolist():
        axes = tuple(x for x in range(D) if x not in (a, b))
        m = S.mean(axis=axes) - grand if axes else S - grand
        pairs.append((m - mains[a][:, None] - mains[b][None, :]).ravel())
    return np.concatenate(mains), (np.concatenate(pairs) if pairs else np.zeros(0))
