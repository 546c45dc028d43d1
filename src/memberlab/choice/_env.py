"""A membership environment with known rewards, for recovery tests and counterfactuals.

States: plan status (``none``, ``monthly``, ``annual`` with months left), delivery use
(0, 1, 2), video use (0, 1) and a price tier fixed per member. Actions: ``none`` (the
anchor, reward 0), ``monthly``, ``annual``. The annual plan locks a member in for
``lock_months``: while months are left only ``annual`` is feasible. Benefit use moves
stochastically and rises with membership.

Rewards are linear in parameters ``theta``::

    r(s, none)               = 0
    r(s, monthly)            = c_monthly + b_delivery d + b_video v - alpha p_m - join [none]
    r(s, annual), signing up = c_annual  + b_delivery d + b_video v - alpha p_a - join [none]
    r(s, annual), locked in  = c_locked  + b_delivery d + b_video v

Identification: with the anchor's reward fixed, rewards in states with a single feasible
action are not identified from behaviour (only their discounted sum along the lock-in is).
memberlab pins them to 0; :meth:`MembershipEnv.identified_rewards` gives the true rewards
in that normalisation (moving the lock-in's value to the sign-up, which leaves behaviour
and every counterfactual unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memberlab._rng import RNGLike, as_generator
from memberlab._typing import BoolArray, FloatArray, IntArray
from memberlab.choice._dynamics import propagate_shares, sample_next, simulate_path
from memberlab.choice._solve import Solution, solve_values

__all__ = ["ACTIONS", "MembershipEnv", "sample_next"]

ACTIONS = ("none", "monthly", "annual")
PARAM_NAMES = (
    "c_monthly",
    "c_annual",
    "c_locked",
    "b_delivery",
    "b_video",
    "alpha_price",
    "join_cost",
)
STATE_COLS = ("status", "months_left", "delivery", "video", "tier")


@dataclass
class MembershipEnv:
    """Monthly membership choices with known rewards.

    Parameters
    ----------
    discount : float, default 0.97
        Monthly discount factor.
    lock_months : int, default 12
        Length of the annual term.
    price_tiers : tuple of float
        Price multipliers; each member has one tier for life.
    monthly_price, annual_price : float
        Base prices, in units of 10 currency units.
    theta : ndarray of shape (7,), optional
        Reward parameters in the order of ``PARAM_NAMES``.

    Attributes
    ----------
    states : DataFrame of shape (n_states, 7)
        ``status, months_left, delivery, video, tier, price_monthly, price_annual``.
    feasible : ndarray of bool, shape (n_states, 3)
    transitions : ndarray of shape (3, n_states, n_states)
    features : ndarray of shape (n_states, 3, 7)
        Reward features; ``rewards = features @ theta``.
    """

    discount: float = 0.97
    lock_months: int = 12
    price_tiers: tuple[float, ...] = (0.85, 1.0, 1.2)
    monthly_price: float = 1.5
    annual_price: float = 14.0
    theta: FloatArray = field(
        default_factory=lambda: np.array([0.3, 0.25, 0.0, 0.55, 0.45, 1.0, 1.5])
    )
    states: pd.DataFrame = field(init=False, repr=False)
    feasible: BoolArray = field(init=False, repr=False)
    transitions: FloatArray = field(init=False, repr=False)
    features: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.discount < 1.0:
            raise ValueError(f"discount == {self.discount}, must be in [0, 1).")
        if self.lock_months < 1:
            raise ValueError(f"lock_months == {self.lock_months}, must be >= 1.")
        self.theta = np.asarray(self.theta, dtype=float)
        if self.theta.shape != (len(PARAM_NAMES),):
            raise ValueError(f"theta has shape {self.theta.shape}, must be ({len(PARAM_NAMES)},).")
        self._build()

    # -- construction ---------------------------------------------------------------
    def _build(self) -> None:
        statuses: list[tuple[str, int]] = [("none", 0), ("monthly", 0)]
        statuses += [("annual", m) for m in range(self.lock_months - 1, -1, -1)]
        rows = []
        for st, ml in statuses:
            for d in range(3):
                for v in range(2):
                    for k, mult in enumerate(self.price_tiers):
                        rows.append(
                            (st, ml, d, v, k, self.monthly_price * mult, self.annual_price * mult)
                        )
        cols = [*STATE_COLS, "price_monthly", "price_annual"]
        self.states = pd.DataFrame(rows, columns=cols)
        index = {(r[0], r[1], r[2], r[3], r[4]): i for i, r in enumerate(rows)}
        n = len(rows)
        feas = np.ones((n, 3), dtype=bool)
        locked = (self.states["status"] == "annual").to_numpy() & (
            self.states["months_left"].to_numpy() > 0
        )
        feas[locked, 0] = False
        feas[locked, 1] = False
        self.feasible = feas
        # benefit use: (up, down) probabilities for members and non-members
        d_move = {True: (0.25, 0.05), False: (0.05, 0.25)}
        v_move = {True: (0.20, 0.05), False: (0.03, 0.20)}
        trans = np.zeros((3, n, n))
        for i, (st, ml, d, v, k, _, _) in enumerate(rows):
            for a in range(3):
                if not feas[i, a]:
                    trans[a, i, i] = 1.0
                    continue
                if a == 0:
                    nst, nml = "none", 0
                elif a == 1:
                    nst, nml = "monthly", 0
                elif st == "annual" and ml > 0:
                    nst, nml = "annual", ml - 1
                else:
                    nst, nml = "annual", self.lock_months - 1
                member = a != 0
                up, down = d_move[member]
                d_dist: dict[int, float] = {}
                for nd, p in ((min(d + 1, 2), up), (max(d - 1, 0), down), (d, 1 - up - down)):
                    d_dist[nd] = d_dist.get(nd, 0.0) + p
                vu, vd = v_move[member]
                v_dist = {1: vu, 0: 1 - vu} if v == 0 else {0: vd, 1: 1 - vd}
                for nd, pd_ in d_dist.items():
                    for nv, pv in v_dist.items():
                        trans[a, i, index[(nst, nml, nd, nv, k)]] += pd_ * pv
        self.transitions = trans
        f = np.zeros((n, 3, len(PARAM_NAMES)))
        dd = self.states["delivery"].to_numpy(float)
        vv = self.states["video"].to_numpy(float)
        pm = self.states["price_monthly"].to_numpy(float)
        pa = self.states["price_annual"].to_numpy(float)
        from_none = np.asarray((self.states["status"] == "none").to_numpy(), dtype=float)
        f[:, 1, 0] = 1.0
        f[:, 1, 3] = dd
        f[:, 1, 4] = vv
        f[:, 1, 5] = -pm
        f[:, 1, 6] = -from_none
        f[:, 2, 1] = np.where(locked, 0.0, 1.0)
        f[:, 2, 2] = np.where(locked, 1.0, 0.0)
        f[:, 2, 3] = dd
        f[:, 2, 4] = vv
        f[:, 2, 5] = np.where(locked, 0.0, -pa)
        f[:, 2, 6] = np.where(locked, 0.0, -from_none)
        f[~feas] = 0.0
        self.features = f

    # -- truth ----------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return PARAM_NAMES

    def rewards(self, theta: FloatArray | None = None) -> FloatArray:
        """True rewards, shape (n_states, 3); 0 where infeasible."""
        th = self.theta if theta is None else np.asarray(theta, dtype=float)
        return np.asarray(self.features @ th)

    def solve(self, rewards: FloatArray | None = None) -> Solution:
        """Solve the model under the true (or given) rewards."""
        r = self.rewards() if rewards is None else rewards
        return solve_values(r, self.transitions, self.feasible, self.discount)

    def identified_rewards(self, rewards: FloatArray | None = None) -> FloatArray:
        """True rewards normalised as PQR identifies them: anchor 0, locked-in states 0.

        Potential shaping with ``h(s) = -W(s)`` on locked states, where ``W`` is the
        discounted reward to the end of the lock-in; behaviour is unchanged.
        """
        r = self.rewards() if rewards is None else np.array(rewards, dtype=float)
        single = self.feasible.sum(axis=1) == 1
        forced = np.argmax(self.feasible, axis=1)
        n = self.n_states
        p_forced = self.transitions[forced, np.arange(n)]  # (S, S)
        w = np.zeros(n)
        idx = np.flatnonzero(single)
        sub = p_forced[np.ix_(idx, idx)]
        w[idx] = np.linalg.solve(np.eye(len(idx)) - self.discount * sub, r[idx, forced[idx]])
        h = -w
        shaped = r + h[:, None] - self.discount * np.einsum("ast,t->sa", self.transitions, h)
        return np.where(self.feasible, shaped, 0.0)

    def state_index(self, states: pd.DataFrame) -> IntArray:
        """Row of ``self.states`` for each row of a panel's state table (by state columns).

        Raises
        ------
        KeyError
            If a state is not one of the environment's.
        """
        keys = list(STATE_COLS)
        lookup = {tuple(r): i for i, r in enumerate(self.states[keys].itertuples(index=False))}
        out = np.empty(len(states), dtype=np.int64)
        for j, r in enumerate(states[keys].itertuples(index=False)):
            out[j] = lookup[tuple(r)]
        return out

    def estimation_features(self) -> Callable[[Any], tuple[FloatArray, list[str]]]:
        """Feature map for CCP/NFXP on panels from this environment.

        ``c_locked`` is left out: a constant reward while locked in is not identified
        apart from the sign-up constant (the environment's default has it at 0).
        """
        keep = [i for i, n in enumerate(PARAM_NAMES) if n != "c_locked"]

        def fn(panel: Any) -> tuple[FloatArray, list[str]]:
            idx = self.state_index(panel.states)
            return self.features[idx][:, :, keep], [PARAM_NAMES[i] for i in keep]

        return fn

    def true_shares(
        self,
        initial: FloatArray,
        months: int,
        *,
        reward_shift: FloatArray | None = None,
        price_factor: float | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Exact plan shares by month, baseline and counterfactual.

        Parameters
        ----------
        initial : ndarray of shape (n_states,)
            Members (or their distribution) over states in month 0.
        months : int
        reward_shift : ndarray of shape (n_states, 3), optional
            Added to the true rewards.
        price_factor : float, optional
            Multiplies the monthly price (through ``alpha_price``).

        Returns
        -------
        baseline, counterfactual : ndarrays of shape (months, 3)
        """
        r = self.rewards()
        shift = np.zeros_like(r) if reward_shift is None else np.asarray(reward_shift, float)
        if price_factor is not None:
            pm = self.states["price_monthly"].to_numpy(dtype=float)
            shift = shift.copy()
            shift[:, 1] -= self.theta[5] * (price_factor - 1.0) * pm
        shift = np.where(self.feasible, shift, 0.0)
        base = propagate_shares(self.solve().policy, self.transitions, initial, months)
        cf = propagate_shares(self.solve(r + shift).policy, self.transitions, initial, months)
        return base, cf

    # -- data -------------------------------------------------------------------------
    def initial_states(self, n_members: int, rng: RNGLike = None) -> IntArray:
        """Draw first-month states: mostly non-members, some monthly and annual members."""
        g = as_generator(rng)
        st = self.states
        w = np.where(st["status"] == "none", 6.0, np.where(st["status"] == "monthly", 2.0, 0.2))
        w = w * np.where(st["delivery"] == 0, 2.0, 1.0)
        p = w / w.sum()
        return g.choice(self.n_states, size=n_members, p=p).astype(np.int64)

    def simulate(
        self,
        n_members: int,
        n_months: int,
        *,
        rng: RNGLike = None,
        rewards: FloatArray | None = None,
        policy: FloatArray | None = None,
        initial: IntArray | None = None,
    ) -> pd.DataFrame:
        """Generate a panel of ``n_members * n_months`` member-months (vectorised).

        Returns
        -------
        DataFrame
            ``member, month, status, months_left, delivery, video, tier, price_monthly,
            price_annual, action, feasible`` (``feasible`` holds ``"|"``-joined labels).
        """
        if n_members < 1 or n_months < 1:
            raise ValueError(
                f"n_members == {n_members}, n_months == {n_months}; both must be >= 1."
            )
        g = as_generator(rng)
        pol = self.solve(rewards).policy if policy is None else policy
        s = self.initial_states(n_members, g) if initial is None else np.asarray(initial)
        states, actions = simulate_path(pol, self.transitions, s, n_months, g)
        flat_s = states.ravel()
        out = self.states.iloc[flat_s].reset_index(drop=True)
        out.insert(0, "month", np.tile(np.arange(n_months), n_members))
        out.insert(0, "member", np.repeat(np.arange(n_members), n_months))
        out["action"] = np.asarray(ACTIONS, dtype=object)[actions.ravel()]
        feas_label = np.where(self.feasible.sum(axis=1) == 1, "annual", FEAS_ALL)
        out["feasible"] = feas_label[flat_s]
        return out


FEAS_ALL = "none|monthly|annual"
