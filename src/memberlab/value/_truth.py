"""The membership environment's true model as choice results, for known-truth checks."""

from __future__ import annotations

from memberlab.choice._env import ACTIONS, MembershipEnv
from memberlab.choice._results import ChoiceResults

__all__ = ["ENV_PRICES", "true_results"]

#: What a member of :class:`~memberlab.choice.MembershipEnv` pays per plan.
ENV_PRICES = {"monthly": "price_monthly", "annual": "price_annual"}


def true_results(env: MembershipEnv) -> ChoiceResults:
    """Choice results holding the environment's true rewards, policy and transitions.

    Rewards are in the normalisation PQR identifies
    (:meth:`~memberlab.choice.MembershipEnv.identified_rewards`), which leaves behaviour,
    and so every member value, unchanged. Members start from the environment's initial
    state distribution (``first_states`` holds 10,000 draws, seed 0); ``counts`` is 1 per
    feasible pair (uniform weights where an estimator would weight by decisions).
    """
    sol = env.solve()
    rewards = env.identified_rewards()
    return ChoiceResults(
        estimator="truth",
        actions=list(ACTIONS),
        anchor="none",
        anchor_reward=0.0,
        discount=env.discount,
        states=env.states.copy(),
        feasible=env.feasible.copy(),
        rewards=rewards,
        q=sol.q,
        policy=sol.policy,
        values=sol.values,
        transitions=env.transitions.copy(),
        counts=env.feasible.astype(float),
        first_states=env.initial_states(10_000, rng=0),
        info={"truth": True},
    )
