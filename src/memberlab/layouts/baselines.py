"""Naive baselines for layout bandits: a Beta-Bernoulli arm per layout, a bandit per slot.

Both follow the small batch protocol of :mod:`memberlab.layouts.regret`:
``select(n, rng) -> layouts`` under the current posterior, then ``learn(layouts, rewards)``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray, IntArray
from memberlab.bayes import beta_init, beta_mean, beta_update
from memberlab.layouts.space import LayoutSpace

__all__ = ["BetaPerLayout", "BetaPerSlot"]


class BetaPerLayout:
    """Thompson sampling with an independent Beta(1, 1) arm for every allowed layout.

    Sampling is exact but cheap on huge spaces: arms that share a posterior (e.g. every
    arm never tried) form a group, and the maximum of ``u`` independent Beta(a, b) draws
    is drawn in one go by inverting its CDF ``I(x; a, b)^u``.

    Parameters
    ----------
    space : LayoutSpace
    max_layouts : int, default 5_000_000
        Refuse larger spaces (one arm each).
    """

    def __init__(self, space: LayoutSpace, *, max_layouts: int = 5_000_000) -> None:
        self.space = space
        L = space.all_layouts(max_layouts=max_layouts)
        self.layouts_ = L[~space.violations(L)]
        self._code_to_arm = np.full(space.n_layouts, -1, dtype=np.int64)
        self._code_to_arm[space.codes(self.layouts_)] = np.arange(self.layouts_.shape[0])
        self.state_ = beta_init(self.layouts_.shape[0])

    def select(self, n: int, rng: np.random.Generator) -> IntArray:
        """``n`` Thompson draws, shape (n, n_slots)."""
        ab = np.stack([self.state_.alpha, self.state_.beta], axis=1)
        keys, inverse, counts = np.unique(ab, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        members = np.argsort(inverse, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # max of u iid Beta(a, b) = 1 - I^{-1}(1 - U^{1/u}; b, a), precise near 1
        q = -np.expm1(np.log(rng.random((n, keys.shape[0]))) / counts[None, :])
        top = 1.0 - special.betaincinv(keys[None, :, 1], keys[None, :, 0], q)
        g = np.argmax(top, axis=1)
        arm = members[first[g] + (rng.random(n) * counts[g]).astype(np.int64)]
        return self.layouts_[arm]

    def learn(self, layouts: IntArray, rewards: IntArray) -> None:
        arms = self._code_to_arm[self.space.codes(layouts)]
        if np.any(arms < 0):
            raise DataValidationError("layouts include a forbidden layout.")
        self.state_ = beta_update(self.state_, arms, rewards)

    def best(self) -> IntArray:
        """Layout with the highest posterior mean, shape (n_slots,)."""
        return self.layouts_[int(np.argmax(beta_mean(self.state_)))]


class BetaPerSlot:
    """An independent Beta-Bernoulli Thompson bandit in every slot (no interactions).

    Every slot's chosen variant is credited with the layout's reward. Needs a space
    without constraints.
    """

    def __init__(self, space: LayoutSpace) -> None:
        if space.n_constraints:
            raise DataValidationError(
                "BetaPerSlot needs a space without constraints; "
                f"this one has n_constraints == {space.n_constraints}."
            )
        self.space = space
        sizes = space.sizes
        self._offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.state_ = beta_init(int(sizes.sum()))

    def _per_slot(self, values: FloatArray) -> list[FloatArray]:
        sizes = self.space.sizes
        return [values[..., o : o + s] for o, s in zip(self._offset, sizes, strict=True)]

    def select(self, n: int, rng: np.random.Generator) -> IntArray:
        draws = rng.beta(self.state_.alpha, self.state_.beta, size=(n, self.state_.n_arms))
        return np.stack([np.argmax(x, axis=1) for x in self._per_slot(draws)], axis=1)

    def learn(self, layouts: IntArray, rewards: IntArray) -> None:
        L = np.asarray(layouts, dtype=np.int64)
        arms = (self._offset[None, :] + L).ravel()
        r = np.repeat(np.asarray(rewards), self.space.n_slots)
        self.state_ = beta_update(self.state_, arms, r)

    def best(self) -> IntArray:
        m = beta_mean(self.state_)
        return np.array([int(np.argmax(x)) for x in self._per_slot(m)], dtype=np.int64)
