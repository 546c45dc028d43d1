"""Beta-Bernoulli arms: the plain baseline and the model for arm-per-item policies."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray, IntArray

__all__ = [
    "BetaState",
    "beta_decay",
    "beta_init",
    "beta_interval",
    "beta_mean",
    "beta_sample",
    "beta_update",
]


@dataclass(frozen=True, slots=True)
class BetaState:
    """Independent Beta(alpha, beta) posteriors, one per arm.

    Attributes
    ----------
    alpha, beta : ndarray of shape (n_arms,)
    prior_alpha, prior_beta : float
    """

    alpha: FloatArray
    beta: FloatArray
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    @property
    def n_arms(self) -> int:
        return int(self.alpha.shape[0])


def beta_init(n_arms: int, *, prior_alpha: float = 1.0, prior_beta: float = 1.0) -> BetaState:
    if n_arms < 0:
        raise DataValidationError(f"n_arms == {n_arms}, must be >= 0.")
    if not (prior_alpha > 0 and prior_beta > 0):
        raise DataValidationError(
            f"prior_alpha == {prior_alpha}, prior_beta == {prior_beta}; both must be > 0."
        )
    return BetaState(
        np.full(n_arms, float(prior_alpha)),
        np.full(n_arms, float(prior_beta)),
        float(prior_alpha),
        float(prior_beta),
    )


def beta_update(state: BetaState, arms: IntArray, rewards: IntArray) -> BetaState:
    """Add successes and failures; ``arms`` and ``rewards`` have shape (n,)."""
    a = np.asarray(arms, dtype=np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    if a.shape != r.shape:
        raise DataValidationError(f"arms has shape {a.shape}, rewards {r.shape}; must match.")
    if a.size and (a.min() < 0 or a.max() >= state.n_arms):
        raise DataValidationError(f"arm index out of range [0, {state.n_arms}).")
    if np.any((r < 0) | (r > 1)):
        raise DataValidationError("rewards must lie in [0, 1].")
    n = state.n_arms
    return replace(
        state,
        alpha=state.alpha + np.bincount(a, weights=r, minlength=n),
        beta=state.beta + np.bincount(a, weights=1.0 - r, minlength=n),
    )


def beta_sample(state: BetaState, rng: np.random.Generator) -> FloatArray:
    return rng.beta(state.alpha, state.beta)


def beta_mean(state: BetaState) -> FloatArray:
    return state.alpha / (state.alpha + state.beta)


def beta_interval(state: BetaState, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Equal-tailed credible interval of each arm's rate."""
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    from scipy import stats  # lazy: scipy.stats costs ~47 MiB that serving never needs

    lo = stats.beta.ppf((1 - level) / 2, state.alpha, state.beta)
    hi = stats.beta.ppf((1 + level) / 2, state.alpha, state.beta)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def beta_decay(state: BetaState, rate: float) -> BetaState:
    """Shrink the pseudo-counts toward the prior by ``rate`` in [0, 1]."""
    if not 0.0 <= rate <= 1.0:
        raise DataValidationError(f"rate == {rate}, must be in [0, 1].")
    return replace(
        state,
        alpha=(1 - rate) * state.alpha + rate * state.prior_alpha,
        beta=(1 - rate) * state.beta + rate * state.prior_beta,
    )
