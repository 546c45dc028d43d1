"""Target policies for off-policy evaluation: their action probabilities on logged rounds.

Every target policy answers one question: for each logged round ``i``, the probability
of each action at that round's position, an array of shape ``(n_rounds, n_actions)``
(obp's ``action_dist[i, :, position[i]]``). Uniform, the logging policy itself and a
fixed choice are exact; a memberlab callouts policy (a saved recommender snapshot) is
estimated by seeded Monte Carlo on the logged contexts and candidate sets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from memberlab._errors import DataValidationError, UnknownItemError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray
from memberlab.evaluation.dataset import BanditDataset

__all__ = [
    "FixedPolicy",
    "LoggedPolicy",
    "RecommenderPolicy",
    "TargetPolicy",
    "UniformPolicy",
    "policy_from_name",
]

log = logging.getLogger(__name__)


class TargetPolicy(Protocol):
    """What off-policy evaluation needs of a policy."""

    @property
    def name(self) -> str: ...

    def action_dist(self, data: BanditDataset) -> FloatArray:
        """Probabilities of shape (n_rounds, n_actions) at each round's position."""
        ...


def _candidate_mask(data: BanditDataset) -> np.ndarray:
    """(n_rounds, n_actions) mask of the actions each round could have served."""
    cands = data.candidates()
    if cands is None:
        return np.ones((data.n_rounds, data.n_actions), dtype=bool)
    lookup = {a: j for j, a in enumerate(data.action_names)}
    mask = np.zeros((data.n_rounds, data.n_actions), dtype=bool)
    for i, c in enumerate(cands):
        if c:
            mask[i, [lookup[str(a)] for a in c]] = True
        else:
            mask[i] = True
    mask[np.arange(data.n_rounds), data.action] = True
    return mask


@dataclass(frozen=True)
class UniformPolicy:
    """Uniform over each round's candidates (all actions when candidates are not logged)."""

    name: str = "uniform"

    def action_dist(self, data: BanditDataset) -> FloatArray:
        mask = _candidate_mask(data).astype(np.float64)
        return mask / mask.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class FixedPolicy:
    """Always the named action (at every position)."""

    action: str
    name: str = "fixed"

    def action_dist(self, data: BanditDataset) -> FloatArray:
        try:
            j = data.action_names.index(str(self.action))
        except ValueError:
            raise UnknownItemError(
                f"action {self.action!r} is not among the dataset's {data.n_actions} actions."
            ) from None
        out = np.zeros((data.n_rounds, data.n_actions))
        out[:, j] = 1.0
        return out


@dataclass(frozen=True)
class LoggedPolicy:
    """The logging policy itself: the logged propensity at the logged action (so every
    weight is 1); the rest of its mass is spread over the other actions in proportion to
    how often each was logged at that position (exact for context-free logging)."""

    name: str = "logged"

    def action_dist(self, data: BanditDataset) -> FloatArray:
        freq = np.zeros((data.len_list, data.n_actions))
        np.add.at(freq, (data.position, data.action), 1.0)
        freq /= np.maximum(freq.sum(axis=1, keepdims=True), 1.0)
        rows = np.arange(data.n_rounds)
        out = freq[data.position].copy()
        out[rows, data.action] = 0.0
        rest = out.sum(axis=1, keepdims=True)
        scale = np.divide(
            (1.0 - data.pscore)[:, None], rest, out=np.zeros_like(rest), where=rest > 0
        )
        out *= scale
        out[rows, data.action] = data.pscore
        return out


@dataclass
class RecommenderPolicy:
    """A memberlab callouts policy by seeded Monte Carlo on the logged contexts.

    For each distinct (context, candidates) of the logs, ``n_draws`` Thompson draws of the
    top ``len_list`` items give the frequency of each item at each position.

    Parameters
    ----------
    recommender : CalloutRecommender
    n_draws : int
        Monte Carlo draws per distinct context (the probability's resolution).
    rng : int, Generator or None
        Seeds the draws: the same seed gives the same probabilities.
    name : str
    """

    recommender: Any
    n_draws: int = 200
    rng: RNGLike = 0
    name: str = "snapshot"

    def action_dist(self, data: BanditDataset) -> FloatArray:
        if int(self.n_draws) != self.n_draws or self.n_draws < 1:
            raise DataValidationError(f"n_draws == {self.n_draws}, must be an integer >= 1.")
        gen = as_generator(self.rng)
        contexts = data.contexts()
        cands = data.candidates()
        lookup = {a: j for j, a in enumerate(data.action_names)}
        L = data.len_list
        out = np.zeros((data.n_rounds, data.n_actions))
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(contexts):
            cand = tuple(cands[i]) if cands is not None and cands[i] else ()
            key = json.dumps([c, cand], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        for rows in groups.values():
            i0 = rows[0]
            cand_list: Sequence[str] | None = (
                list(cands[i0]) if cands is not None and cands[i0] else None
            )
            n_c = len(cand_list) if cand_list is not None else data.n_actions
            k = min(L, n_c)
            seed = int(gen.integers(0, 2**62))
            batch = self.recommender.decide_batch(
                contexts[i0], n=int(self.n_draws), candidates=cand_list, k=k, rng=seed
            )
            ids = [lookup.get(str(x), -1) for x in batch.candidate_ids]
            freq = np.zeros((L, data.n_actions))
            for pos in range(k):
                col = np.asarray(ids)[batch.chosen[:, pos]]
                col = col[col >= 0]
                np.add.at(freq[pos], col, 1.0)
            freq /= float(self.n_draws)
            idx = np.asarray(rows)
            out[idx] = freq[data.position[idx]]
        return out


def policy_from_name(spec: str, **kw: Any) -> TargetPolicy:
    """``"uniform"``, ``"logged"`` or ``"fixed:ITEM"``."""
    if spec == "uniform":
        return UniformPolicy()
    if spec == "logged":
        return LoggedPolicy()
    if spec.startswith("fixed:"):
        return FixedPolicy(spec.split(":", 1)[1])
    raise DataValidationError(
        f"policy == {spec!r}, must be 'uniform', 'logged', 'fixed:ITEM', a snapshot file or "
        "a settings JSON."
    )
