"""A callout world where clicks and member value disagree, with ground truth.

Shoppers arrive in states of the membership environment (non-members and monthly
members, any benefit use and price tier). Two kinds of callout compete:

- ``"deal"`` callouts win clicks and monthly sign-ups;
- ``"annual"`` callouts win fewer clicks, and annual sign-ups that grow with the
  shopper's delivery use.

An impression is clicked with probability ``p_click(item, state)``; a clicked impression
converts to plan ``p`` with probability ``p_conv(item, state, p) / p_click``. The value of
a conversion is the true member value of the plan in the shopper's state
(:func:`memberlab.value.true_results` of the environment), so a click policy favours deal
callouts everywhere while the value-maximising callout depends on the state.

A :class:`ValueWorld` is a :class:`memberlab.evaluation.harness.World` for any
:class:`WorldPolicy`; its rewards are ``"value"`` (the objective: true expected member
value of the callout shown) and ``"clicks"`` (its click rate), and regret is measured
against the best callout in the shopper's state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator, spawn
from memberlab._typing import FloatArray, IntArray
from memberlab.callouts import Catalog
from memberlab.callouts.recommender import CalloutRecommender, Feedback
from memberlab.choice._env import MembershipEnv
from memberlab.evaluation.harness import Outcome, run
from memberlab.evaluation.regret import RegretTrace
from memberlab.value._bandit import ValueFeedback, ValueRecommender
from memberlab.value._member import MemberValues, member_values
from memberlab.value._truth import ENV_PRICES, true_results

__all__ = [
    "ClickObjective",
    "OraclePolicy",
    "RandomPolicy",
    "ValueObjective",
    "ValueTrace",
    "ValueWorld",
    "WorldPolicy",
    "run_value_world",
]

logger = logging.getLogger(__name__)

STATE_COLS = ("status", "months_left", "delivery", "video", "tier", "price_monthly", "price_annual")
PLANS = ("monthly", "annual")


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class ValueWorld:
    """Callouts, shoppers and their true click and conversion probabilities.

    Parameters
    ----------
    env : MembershipEnv, optional
        Membership environment (default ``MembershipEnv()``).
    n_items : int, default 8
        Half ``"deal"``, half ``"annual"`` callouts (at least 2).
    horizon : int, default 24
        Months of revenue in the true member value.
    item_spread : float, default 0.25
        Standard deviation of each item's log multiplier on its rates.
    rng : int, Generator or None
        Draws the item multipliers.

    Attributes
    ----------
    catalog : Catalog
    items : list of str
    pitch : list of str
    shopper_states : ndarray of int
        Environment states shoppers arrive in (uniformly).
    true_values : MemberValues
    """

    env: MembershipEnv | None = None
    n_items: int = 8
    horizon: int = 24
    item_spread: float = 0.25
    rng: RNGLike = 0
    catalog: Catalog = field(init=False, repr=False)
    items: list[str] = field(init=False, repr=False)
    pitch: list[str] = field(init=False, repr=False)
    shopper_states: IntArray = field(init=False, repr=False)
    true_values: MemberValues = field(init=False, repr=False)
    _p_click: FloatArray = field(init=False, repr=False)
    _p_conv: FloatArray = field(init=False, repr=False)
    _ev: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_items < 2:
            raise DataValidationError(f"n_items == {self.n_items}, must be >= 2.")
        if self.horizon < 1:
            raise DataValidationError(f"horizon == {self.horizon}, must be >= 1.")
        env = MembershipEnv() if self.env is None else self.env
        self.env = env
        g = as_generator(self.rng)
        st = env.states
        choice = env.feasible.sum(axis=1) > 1
        self.shopper_states = np.flatnonzero(
            choice & st["status"].isin(["none", "monthly"]).to_numpy()
        )
        self.true_values = member_values(true_results(env), prices=ENV_PRICES, horizon=self.horizon)
        n = self.n_items
        self.pitch = ["deal" if j % 2 == 0 else "annual" for j in range(n)]
        self.items = [f"{p}-{j}" for j, p in enumerate(self.pitch)]
        benefits = ("delivery", "video", "music", "deals")
        records = [
            {"item_id": i, "pitch": p, "benefit": benefits[j % len(benefits)]}
            for j, (i, p) in enumerate(zip(self.items, self.pitch, strict=True))
        ]
        self.catalog = Catalog.from_records(records)
        mult = np.exp(g.normal(0.0, self.item_spread, size=(n, 3)))
        d = st["delivery"].to_numpy(dtype=float)
        member = (st["status"] == "monthly").to_numpy()
        n_s = env.n_states
        p_click = np.zeros((n, n_s))
        p_conv = np.zeros((n, n_s, len(PLANS)))
        for j, p in enumerate(self.pitch):
            if p == "deal":
                click = np.full(n_s, 0.10)
                monthly = np.where(member, 0.0, 0.05)
                annual = np.full(n_s, 0.004)
            else:
                click = np.full(n_s, 0.06)
                monthly = np.where(member, 0.0, 0.004)
                annual = 0.006 + 0.02 * d
            p_click[j] = np.minimum(click * mult[j, 0], 0.5)
            p_conv[j, :, 0] = monthly * mult[j, 1]
            p_conv[j, :, 1] = annual * mult[j, 2]
            total = p_conv[j].sum(axis=1)
            scale = np.minimum(1.0, 0.95 * p_click[j] / np.maximum(total, 1e-12))
            p_conv[j] *= scale[:, None]
        self._p_click = p_click
        self._p_conv = p_conv
        vals = self._state_values()
        self._ev = np.einsum("jsp,sp->js", p_conv, vals)

    def _state_values(self) -> FloatArray:
        tv = self.true_values
        idx = [tv.action_index(p) for p in PLANS]
        return np.nan_to_num(tv.values[:, idx], nan=0.0)

    # ------------------------------------------------------------------ truth
    def context(self, state: int) -> dict[str, Any]:
        """The decision context of a shopper in environment state ``state``."""
        assert self.env is not None
        row = self.env.states.iloc[int(state)]
        return {c: _py(row[c]) for c in STATE_COLS}

    def expected_value(self, item: int, state: int) -> float:
        """True expected member value of showing ``item`` to a shopper in ``state``."""
        return float(self._ev[item, state])

    def click_rate(self, item: int, state: int) -> float:
        return float(self._p_click[item, state])

    def best_item(self, state: int) -> int:
        return int(np.argmax(self._ev[:, state]))

    def summary(self) -> pd.DataFrame:
        """Per pitch: mean click rate, expected value and how often it is the best item."""
        s = self.shopper_states
        best = np.argmax(self._ev[:, s], axis=0)
        rows = []
        for p in ("deal", "annual"):
            j = [i for i, q in enumerate(self.pitch) if q == p]
            rows.append(
                {
                    "pitch": p,
                    "click_rate": float(self._p_click[j][:, s].mean()),
                    "expected_value": float(self._ev[j][:, s].mean()),
                    "best_share": float(np.isin(best, j).mean()),
                }
            )
        return pd.DataFrame(rows)

    def draw(self, item: int, state: int, u: float, v: float) -> tuple[bool, str | None]:
        """An impression's outcome from two uniforms: (clicked, plan or None)."""
        clicked, plan = self._outcomes(np.array([item]), np.array([state]), np.array([[u, v]]))
        return bool(clicked[0]), (PLANS[plan[0]] if plan[0] >= 0 else None)

    def _outcomes(self, items: IntArray, states: IntArray, uv: FloatArray) -> tuple[Any, IntArray]:
        """Clicked (bool) and the plan index converted to (-1: none) per impression.

        A click when ``u < p_click``; then plan ``k`` when ``v`` falls in the ``k``-th
        step of the cumulative conversion shares ``p_conv / p_click``.
        """
        pc = self._p_click[items, states]
        clicked = uv[:, 0] < pc
        with np.errstate(divide="ignore", invalid="ignore"):  # pc == 0 never clicks
            cum = np.cumsum(self._p_conv[items, states] / pc[:, None], axis=1)
        k = (cum <= uv[:, 1:2]).sum(axis=1)
        plan = np.where(clicked & (k < len(PLANS)), k, -1)
        return clicked, np.asarray(plan, dtype=np.int64)

    # ------------------------------------------------ World (memberlab.evaluation.harness)
    reward_names: tuple[str, ...] = ("value", "clicks")

    def adapt(self, policy: WorldPolicy) -> _WorldPolicyRun:
        return _WorldPolicyRun(self, policy)

    def start(self, n_rounds: int, rng: np.random.Generator) -> None:
        """The run's shopper stream, outcome uniforms and decision seeds, from ``rng`` alone,
        so every policy run with the same ``rng`` meets the same shoppers."""
        g_states, g_out, g_seed = spawn(rng, 3)
        self._states = self.shopper_states[g_states.integers(0, len(self.shopper_states), n_rounds)]
        self._uv = g_out.random((n_rounds, 2))
        self._seeds = g_seed.integers(0, 2**63, size=n_rounds)
        self._contexts = {int(s): self.context(int(s)) for s in np.unique(self._states)}

    def requests(self, start: int, stop: int, rng: np.random.Generator) -> _Shoppers:
        return _Shoppers(self._states[start:stop], self._uv[start:stop], self._seeds[start:stop])

    def expected(self, requests: _Shoppers, actions: IntArray) -> FloatArray:
        s = requests.states
        return np.stack([self._ev[actions, s], self._p_click[actions, s]], axis=1)

    def best(self, requests: _Shoppers) -> FloatArray:
        return np.asarray(self._ev[:, requests.states].max(axis=0))

    def realise(
        self,
        requests: _Shoppers,
        actions: IntArray,
        expected: FloatArray,
        rng: np.random.Generator,
    ) -> Outcome:
        clicked, plan = self._outcomes(actions, requests.states, requests.uv)
        rows = {"state": requests.states, "item": actions, "clicked": clicked, "plan": plan}
        return Outcome(clicked.astype(np.float64), rows)

    def is_optimal(self, action: IntArray) -> bool | None:
        return None  # the best callout depends on the shopper's state


class WorldPolicy(Protocol):
    """What :func:`run_value_world` needs of a policy."""

    def choose(self, context: Mapping[str, Any], state: int, seed: int) -> int: ...

    def learn(
        self, feedback: Sequence[tuple[Mapping[str, Any], int, bool, str | None]]
    ) -> None: ...


class RandomPolicy:
    """Uniform over the items."""

    def __init__(self, world: ValueWorld) -> None:
        self.world = world

    def choose(self, context: Mapping[str, Any], state: int, seed: int) -> int:
        return int(np.random.default_rng(seed).integers(self.world.n_items))

    def learn(self, feedback: Sequence[tuple[Mapping[str, Any], int, bool, str | None]]) -> None:
        return None


class OraclePolicy:
    """The item with the highest true expected value in the shopper's state."""

    def __init__(self, world: ValueWorld) -> None:
        self.world = world

    def choose(self, context: Mapping[str, Any], state: int, seed: int) -> int:
        return self.world.best_item(state)

    def learn(self, feedback: Sequence[tuple[Mapping[str, Any], int, bool, str | None]]) -> None:
        return None


class ClickObjective:
    """Thompson sampling on clicks (:class:`~memberlab.callouts.CalloutRecommender`)."""

    def __init__(self, world: ValueWorld, *, crosses: Sequence[tuple[str, str]] = ()) -> None:
        self.world = world
        self.model = CalloutRecommender(catalog=world.catalog, crosses=list(crosses), rng=0)

    def choose(self, context: Mapping[str, Any], state: int, seed: int) -> int:
        dec = self.model.decide(context, rng=seed, with_propensity=False)
        return self.world.items.index(dec.items[0].item_id)

    def learn(self, feedback: Sequence[tuple[Mapping[str, Any], int, bool, str | None]]) -> None:
        self.model.update(
            [Feedback(c, self.world.items[j], float(clicked)) for c, j, clicked, _ in feedback]
        )


class ValueObjective:
    """Thompson sampling on expected member value (:class:`ValueRecommender`)."""

    def __init__(
        self,
        world: ValueWorld,
        values: MemberValues,
        *,
        crosses: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.world = world
        self.model = ValueRecommender(
            catalog=world.catalog, values=values, crosses=list(crosses), rng=0
        )

    def choose(self, context: Mapping[str, Any], state: int, seed: int) -> int:
        dec = self.model.decide(context, seed=seed, with_propensity=False)
        return self.world.items.index(dec.items[0].item_id)

    def learn(self, feedback: Sequence[tuple[Mapping[str, Any], int, bool, str | None]]) -> None:
        self.model.update(
            [
                ValueFeedback(c, self.world.items[j], clicked, plan)
                for c, j, clicked, plan in feedback
            ]
        )


@dataclass(frozen=True, slots=True)
class _Shoppers:
    """One batch of the stream: states, outcome uniforms and decision seeds."""

    states: IntArray  # (n,) environment states
    uv: FloatArray  # (n, 2)
    seeds: IntArray  # (n,)


class _WorldPolicyRun:
    """A :class:`WorldPolicy` as the harness's batch policy: one ``choose`` per shopper."""

    def __init__(self, world: ValueWorld, policy: WorldPolicy) -> None:
        self.world = world
        self.policy = policy
        self.name: str = getattr(policy, "name", "") or type(policy).__name__

    def start(self, rng: np.random.Generator) -> None:
        return None

    def decide(self, requests: _Shoppers, rng: np.random.Generator) -> IntArray:
        ctx = self.world._contexts
        return np.array(
            [
                self.policy.choose(ctx[s], s, seed)
                for s, seed in zip(requests.states.tolist(), requests.seeds.tolist(), strict=True)
            ],
            dtype=np.int64,
        )

    def update(self, feedback: Mapping[str, Any], t: int) -> None:
        ctx = self.world._contexts
        cols = zip(
            feedback["state"].tolist(),
            feedback["item"].tolist(),
            feedback["clicked"].tolist(),
            feedback["plan"].tolist(),
            strict=True,
        )
        self.policy.learn([(ctx[s], j, c, PLANS[p] if p >= 0 else None) for s, j, c, p in cols])


#: The value world's trace: one :class:`~memberlab.evaluation.regret.RegretTrace` whose
#: ``expected`` columns are ``"value"`` and ``"clicks"`` per round (``last_quarter()``
#: gives their means over the last quarter of rounds).
ValueTrace = RegretTrace


def run_value_world(
    world: ValueWorld,
    policy: WorldPolicy,
    *,
    n_rounds: int = 12_000,
    batch: int = 200,
    rng: RNGLike = None,
) -> RegretTrace:
    """Run a policy on a shopper stream; feedback is applied in batches of ``batch``.

    The shopper stream, the outcomes' uniforms and the decision seeds come from ``rng``
    alone, so every policy run with the same ``rng`` meets the same shoppers. The loop is
    :func:`memberlab.evaluation.harness.run`.
    """
    return run(world, policy, n_rounds, batch=batch, rng=rng)
