"""Member value: what a plan is worth to the programme, from fitted choice results.

>>> from memberlab.choice import MembershipEnv, Panel, TabularPQR
>>> from memberlab.value import member_values
>>> env = MembershipEnv()
>>> frame = env.simulate(300, 12, rng=0)
>>> panel = Panel.from_frame(frame, id="member", time="month", action="action",
...     state=["status", "months_left", "delivery", "video", "tier",
...            "price_monthly", "price_annual"],
...     actions=["none", "monthly", "annual"], feasible="feasible")
>>> res = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(panel)
>>> mv = member_values(res, prices={"monthly": "price_monthly", "annual": "price_annual"})
>>> mv.values.shape == (panel.n_states, 3)
True
"""

from typing import TYPE_CHECKING

from memberlab._lazy import attach

# Names load their module on first use (memberlab._lazy).
__getattr__, __dir__ = attach(__name__, __file__)

if TYPE_CHECKING:
    from memberlab.value._bandit import ValueFeedback, ValueLedger, ValueRecommender
    from memberlab.value._member import (
        MemberValues,
        PriceSpec,
        StateColumnError,
        member_values,
        state_codes,
    )
    from memberlab.value._model import load_replicates, value_prices, values_from_model
    from memberlab.value._scenario import (
        Scenario,
        ScenarioComparison,
        compare_scenarios,
    )
    from memberlab.value._truth import ENV_PRICES, true_results
    from memberlab.value._world import (
        ClickObjective,
        OraclePolicy,
        RandomPolicy,
        ValueObjective,
        ValueTrace,
        ValueWorld,
        run_value_world,
    )

__all__ = [
    "ENV_PRICES",
    "ClickObjective",
    "MemberValues",
    "OraclePolicy",
    "PriceSpec",
    "RandomPolicy",
    "Scenario",
    "ScenarioComparison",
    "StateColumnError",
    "ValueFeedback",
    "ValueLedger",
    "ValueObjective",
    "ValueRecommender",
    "ValueTrace",
    "ValueWorld",
    "compare_scenarios",
    "load_replicates",
    "member_values",
    "run_value_world",
    "state_codes",
    "true_results",
    "value_prices",
    "values_from_model",
]
