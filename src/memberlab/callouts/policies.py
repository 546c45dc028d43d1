"""Policies for callout experiments: baselines and the attribute Thompson sampler.

All follow :class:`memberlab.callouts.simulator.SimPolicy`: ``start`` gets the live
catalog and the world's contexts, ``choose`` serves one item per request of a batch and
``learn`` receives closed feedback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray, IntArray
from memberlab.bayes.groups import GroupPrior
from memberlab.callouts.catalog import Catalog
from memberlab.callouts.recommender import CalloutRecommender, Feedback

__all__ = [
    "DEFAULT_CROSSES",
    "DEFAULT_REFIT_AT",
    "AttributeTSPolicy",
    "BetaBernoulliPolicy",
    "EpsilonGreedyPolicy",
    "OraclePolicy",
    "UniformPolicy",
]

DEFAULT_CROSSES: tuple[tuple[str, str], ...] = (("page", "benefit"), ("member", "benefit"))
DEFAULT_REFIT_AT: tuple[int, ...] = (2_000, 5_000, 10_000, 20_000, 40_000, 70_000)


class _ArmStats:
    """Per-item counts, keyed by item id (new items get a fresh arm)."""

    def __init__(self) -> None:
        self.pos: dict[str, int] = {}
        self.alpha = np.zeros(0)
        self.beta = np.zeros(0)

    def idx(self, ids: Sequence[str]) -> IntArray:
        out = np.empty(len(ids), dtype=np.int64)
        for j, i in enumerate(ids):
            p = self.pos.get(i)
            if p is None:
                p = self.pos[i] = len(self.pos)
            out[j] = p
        if len(self.pos) > self.alpha.shape[0]:
            grow = len(self.pos) - self.alpha.shape[0]
            self.alpha = np.concatenate([self.alpha, np.zeros(grow)])
            self.beta = np.concatenate([self.beta, np.zeros(grow)])
        return out

    def add(self, ids: list[str], rewards: IntArray) -> None:
        j = self.idx(ids)
        n = self.alpha.shape[0]
        self.alpha += np.bincount(j, weights=rewards, minlength=n)
        self.beta += np.bincount(j, weights=1 - rewards, minlength=n)


class UniformPolicy:
    """Serve a uniformly random eligible item."""

    name = "uniform random"

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def choose(self, ctx_codes: IntArray, active: list[str]) -> IntArray:
        return np.asarray(self._rng.integers(0, len(active), ctx_codes.shape[0]), dtype=np.int64)

    def learn(self, ctx_codes: IntArray, item_ids: list[str], rewards: IntArray, t: int) -> None:
        return None


class EpsilonGreedyPolicy:
    """Per-item click-rate estimates (Beta(1, 1) smoothed); explore with probability eps."""

    def __init__(self, *, epsilon: float = 0.05) -> None:
        if not 0 <= epsilon <= 1:
            raise DataValidationError(f"epsilon == {epsilon}, must be in [0, 1].")
        self.epsilon = epsilon
        self.name = f"epsilon-greedy ({epsilon:g})"

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._arms = _ArmStats()

    def choose(self, ctx_codes: IntArray, active: list[str]) -> IntArray:
        j = self._arms.idx(active)
        a, b = self._arms.alpha[j], self._arms.beta[j]
        mean = (a + 1.0) / (a + b + 2.0)
        m = ctx_codes.shape[0]
        best = np.flatnonzero(mean == mean.max())
        out = best[self._rng.integers(0, best.shape[0], m)]
        explore = np.asarray(self._rng.random(m) < self.epsilon, dtype=bool)
        out[explore] = self._rng.integers(0, len(active), int(explore.sum()))
        return out

    def learn(self, ctx_codes: IntArray, item_ids: list[str], rewards: IntArray, t: int) -> None:
        self._arms.add(item_ids, rewards)


class BetaBernoulliPolicy:
    """Thompson sampling with one Beta-Bernoulli arm per item (no attributes, no context)."""

    def __init__(self, *, prior_alpha: float = 1.0, prior_beta: float = 1.0) -> None:
        if not (prior_alpha > 0 and prior_beta > 0):
            raise DataValidationError(
                f"prior_alpha == {prior_alpha}, prior_beta == {prior_beta}; both must be > 0."
            )
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.name = "Beta-Bernoulli TS per item"

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._arms = _ArmStats()

    def choose(self, ctx_codes: IntArray, active: list[str]) -> IntArray:
        j = self._arms.idx(active)
        a = self._arms.alpha[j] + self.prior_alpha
        b = self._arms.beta[j] + self.prior_beta
        draws = self._rng.beta(a, b, size=(ctx_codes.shape[0], len(active)))
        return np.asarray(draws.argmax(axis=1), dtype=np.int64)

    def learn(self, ctx_codes: IntArray, item_ids: list[str], rewards: IntArray, t: int) -> None:
        self._arms.add(item_ids, rewards)


class OraclePolicy:
    """Serve the truly best item (needs the world's click-probability matrix)."""

    name = "oracle"

    def __init__(self, probs_of: Any) -> None:
        self._world = probs_of

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self._index = {it.item_id: j for j, it in enumerate(self._world.items)}

    def choose(self, ctx_codes: IntArray, active: list[str]) -> IntArray:
        aidx = np.array([self._index[i] for i in active])
        P: FloatArray = self._world.probs[ctx_codes][:, aidx]
        return np.asarray(P.argmax(axis=1), dtype=np.int64)

    def learn(self, ctx_codes: IntArray, item_ids: list[str], rewards: IntArray, t: int) -> None:
        return None


class AttributeTSPolicy:
    """:class:`CalloutRecommender` Thompson sampling, optionally with meta-prior refits.

    Parameters
    ----------
    meta_prior : {None, "naive", "deconvolved"}
        ``None`` keeps the fixed ``N(0, prior_var)`` prior on every group.
    refit_at : sequence of int
        Rounds after which the group priors are refit and the log replayed.
    crosses : sequence of (context key, item attribute)
    prior_var : float
        The fixed prior variance (and the start before the first refit).
    """

    def __init__(
        self,
        *,
        meta_prior: Literal["naive", "deconvolved"] | None = None,
        refit_at: Sequence[int] = DEFAULT_REFIT_AT,
        crosses: Sequence[tuple[str, str]] = DEFAULT_CROSSES,
        prior_var: float = 1.0,
        name: str | None = None,
    ) -> None:
        if meta_prior not in (None, "naive", "deconvolved"):
            raise DataValidationError(
                f"meta_prior == {meta_prior!r}, must be None, 'naive' or 'deconvolved'."
            )
        self.meta_prior = meta_prior
        self.refit_at = tuple(sorted(refit_at))
        self.crosses = tuple(crosses)
        self.prior_var = prior_var
        default = (
            f"attribute TS, fixed N(0,{prior_var:g}) prior"
            if meta_prior is None
            else f"attribute TS, {meta_prior} meta-prior"
        )
        self.name = name or default

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self.rec = CalloutRecommender(
            catalog=catalog,
            crosses=self.crosses,
            default_prior=GroupPrior(0.0, self.prior_var),
            bias_prior=GroupPrior(0.0, self.prior_var),
            rng=seed,
        )
        self._contexts = list(contexts)
        self._log: list[Feedback] = []
        self._next_refit = 0

    def choose(self, ctx_codes: IntArray, active: list[str]) -> IntArray:
        ctxs = [self._contexts[c] for c in ctx_codes.tolist()]
        b = self.rec.decide_batch(ctxs, k=1)
        return b.chosen[:, 0]

    def learn(self, ctx_codes: IntArray, item_ids: list[str], rewards: IntArray, t: int) -> None:
        fb = [
            Feedback(self._contexts[c], i, float(r))
            for c, i, r in zip(ctx_codes.tolist(), item_ids, rewards.tolist(), strict=True)
        ]
        self._log.extend(fb)
        if (
            self.meta_prior is not None
            and self._next_refit < len(self.refit_at)
            and t >= self.refit_at[self._next_refit]
        ):
            while self._next_refit < len(self.refit_at) and t >= self.refit_at[self._next_refit]:
                self._next_refit += 1
            self.rec.refit_priors(self._log, method=self.meta_prior)  # replays the whole log
        else:
            self.rec.update(fb)
