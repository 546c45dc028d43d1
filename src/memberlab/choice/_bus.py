"""The synthetic bus-engine environment of Geng et al., "Deep PQR" (ICML 2020).

Reimplemented from the description of ``SAmQ/env/bus_env.py`` in the first author's
public code (gengsinong/SAmQ): two actions, ``replace`` (the anchor, reward 0, resets the
mileage to 0) and ``keep`` (reward ``5 - s[0]``, mileage grows by U(1, 2)); a state of
``1 + n_noise`` dimensions of which the last ``n_noise`` are noise redrawn from U(-5, 5)
every period whatever the action; discount 0.9. The true reward is linear in the state
with coefficients ``(5, -1, 0, 0)`` (intercept, mileage, noise).

Behaviour is the dynamic logit's soft-optimal policy, solved here by value iteration on a
fine mileage grid (the noise does not enter the value), where the authors' code learns a
soft-Q policy from random play first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray

__all__ = ["BUS_ACTIONS", "BusEnv"]

BUS_ACTIONS = ("replace", "keep")


@dataclass(frozen=True)
class BusEnv:
    """Bus-engine replacement with a continuous mileage and noise dimensions.

    Parameters
    ----------
    discount : float, default 0.9
    intercept, slope : float, default 5 and -1
        Reward of ``keep``: ``intercept + slope * s[0]``.
    n_noise : int, default 2
        Noise dimensions, U(-5, 5) each period.
    grid_max, grid_step : float, default 60 and 0.02
        Mileage grid of the value iteration.
    """

    discount: float = 0.9
    intercept: float = 5.0
    slope: float = -1.0
    n_noise: int = 2
    grid_max: float = 60.0
    grid_step: float = 0.02

    @property
    def state_cols(self) -> list[str]:
        return [f"s{i}" for i in range(1 + self.n_noise)]

    @property
    def true_coef(self) -> FloatArray:
        """Reward of ``keep`` regressed on ``(1, s0, s1, ...)``: ``(5, -1, 0, ...)``."""
        return np.array([self.intercept, self.slope, *([0.0] * self.n_noise)])

    def reward(self, states: FloatArray) -> FloatArray:
        """True reward of ``keep``, shape (n,), for states of shape (n, 1 + n_noise)."""
        return np.asarray(self.intercept + self.slope * np.asarray(states)[:, 0])

    def solve(self) -> tuple[FloatArray, FloatArray]:
        """Soft-optimal probability of ``keep`` on the mileage grid: ``(grid, p_keep)``."""
        if not 0.0 <= self.discount < 1.0:
            raise ValueError(f"discount == {self.discount}, must be in [0, 1).")
        grid = np.arange(0.0, self.grid_max + self.grid_step / 2, self.grid_step)
        inc = 1.0 + (np.arange(40) + 0.5) / 40  # midpoint rule for U(1, 2)
        nxt = grid[:, None] + inc[None, :]
        v = np.zeros_like(grid)
        for _ in range(2000):
            ev = np.interp(nxt, grid, v).mean(axis=1)  # flat beyond grid_max (never kept)
            q_keep = self.intercept + self.slope * grid + self.discount * ev
            q_rep = np.full_like(grid, self.discount * v[0])
            v_new = np.logaddexp(q_keep, q_rep)
            if np.max(np.abs(v_new - v)) < 1e-12:
                v = v_new
                break
            v = v_new
        ev = np.interp(nxt, grid, v).mean(axis=1)
        q_keep = self.intercept + self.slope * grid + self.discount * ev
        p_keep = 1.0 / (1.0 + np.exp(self.discount * v[0] - q_keep))
        return grid, p_keep

    def simulate(self, n_transitions: int = 5000, *, rng: RNGLike = None) -> pd.DataFrame:
        """One bus followed for ``n_transitions + 1`` periods under the soft-optimal policy.

        Returns
        -------
        DataFrame
            ``bus, t, s0, s1, ..., action`` (``action`` in ``"replace"``, ``"keep"``).
        """
        if n_transitions < 1:
            raise ValueError(f"n_transitions == {n_transitions}, must be >= 1.")
        g = as_generator(rng)
        grid, p_keep = self.solve()
        n = n_transitions + 1
        s = np.zeros((n, 1 + self.n_noise))
        keep = np.zeros(n, dtype=bool)
        mileage = 0.0
        for t in range(n):
            s[t, 0] = mileage
            s[t, 1:] = g.uniform(-5.0, 5.0, self.n_noise)
            keep[t] = g.random() < float(np.interp(mileage, grid, p_keep))
            mileage = mileage + g.uniform(1.0, 2.0) if keep[t] else 0.0
        out = pd.DataFrame(s, columns=self.state_cols)
        out.insert(0, "t", np.arange(n))
        out.insert(0, "bus", 0)
        out["action"] = np.where(keep, "keep", "replace")
        return out
