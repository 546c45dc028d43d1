"""The common policy check suite (memberlab.policy.checks) on every policy kind, with
non-default hyperparameters; plus version-1 snapshots still loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.bayes import GroupPrior
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.choice import MembershipEnv
from memberlab.layouts import LayoutPolicy
from memberlab.policy import Policy, checks
from memberlab.value import (
    ENV_PRICES,
    MemberValues,
    ValueFeedback,
    ValueRecommender,
    member_values,
    true_results,
)

DATA = Path(__file__).parent / "data"
BENEFITS = ["video", "music", "delivery", "reading"]


def _catalog() -> Catalog:
    return Catalog.from_records(
        [
            {
                "item_id": f"i{j}",
                "benefit": BENEFITS[j % 4],
                "brand": f"b{j % 3}",
                "price": float(j),
            }
            for j in range(6)
        ]
    )


CALLOUT_CONTEXTS = [
    {"page": "video", "member": True, "age": 34.5},
    {"page": "home", "member": False, "interests": ["films", "novels"]},
]


def _callout_feedback(pol: CalloutRecommender, rng: np.random.Generator) -> list[Feedback]:
    ids = pol.catalog.active_ids()
    return [
        Feedback(
            CALLOUT_CONTEXTS[int(rng.integers(2))],
            ids[int(rng.integers(len(ids)))],
            float(rng.random() < 0.3),
        )
        for _ in range(40)
    ]


CALLOUTS = checks.PolicyCase(
    make=lambda: CalloutRecommender(
        catalog=_catalog(),
        crosses=None,
        propensity_draws=300,
        noise=0.8,
        priors={"brand": GroupPrior(0.0, 0.3)},
        default_prior=GroupPrior(0.0, 0.5),
        bias_prior=GroupPrior(-1.0, 0.5),
        cross_prior=GroupPrior(0.0, 0.2),
        context_edges={"age": (18.0, 30.0, 50.0)},
        shadow_prior_var=0.2,
        shadow_bias_var=4.0,
        shadow_sweeps=3,
        prior_quantile=0.8,
        exploration=1.5,
        rng=3,
    ),
    contexts=CALLOUT_CONTEXTS,
    unseen_context={"page": "never", "device": "watch", "age": 99.0},
    feedback=_callout_feedback,
    decide_kwargs={"k": 2},
)

SPACE: dict[str, Any] = {
    "slots": {"headline": ["h1", "h2", "h3"], "image": ["i1", "i2"], "body": ["b1", "b2"]},
    "constraints": [{"headline": "h1", "image": "i2"}],
    "context": ["device"],
}
LAYOUT_CONTEXTS = [{"device": "mobile"}, {"device": "desktop"}]


def _layout_feedback(pol: LayoutPolicy, rng: np.random.Generator) -> list[Any]:
    out = []
    for _ in range(40):
        layout = pol.decide(LAYOUT_CONTEXTS[int(rng.integers(2))], rng=rng).layout
        out.append((LAYOUT_CONTEXTS[int(rng.integers(2))], layout, int(rng.random() < 0.4)))
    return out


def _layout_case(exact: int) -> checks.PolicyCase:
    return checks.PolicyCase(
        make=lambda: LayoutPolicy(
            SPACE,
            priors={"first_order": GroupPrior(0.0, 0.3), "context": GroupPrior(0.0, 0.1)},
            noise=0.9,
            n_restarts=3,
            max_steps=5,
            exact_max_layouts=exact,
            propensity_draws=200,
            warm_start=False,
            pair_starts=2,
            shadow_prior_var=0.3,
            shadow_bias_var=5.0,
            shadow_sweeps=2,
            prior_quantile=0.75,
            exploration=0.7,
            rng=4,
        ),
        contexts=LAYOUT_CONTEXTS,
        unseen_context={"device": "watch"},
        feedback=_layout_feedback,
        choice_key=lambda c: tuple(sorted(c.items())),
    )


def _value_setup() -> tuple[MemberValues, list[dict[str, Any]], dict[str, Any]]:
    """Member values of the membership environment's true model (12 months); two
    training states (a light and a heavy delivery user) and a third never trained on."""
    env = MembershipEnv()
    values = member_values(true_results(env), prices=ENV_PRICES, horizon=12)
    st = env.states
    rows = st[(st["status"] == "none") & (st["tier"] == 1) & (st["video"] == 0)]

    def ctx(row: Any, **extra: Any) -> dict[str, Any]:
        return {**{c: np.asarray(row[c]).item() for c in values.state_cols}, **extra}

    seen = [ctx(rows.iloc[0], page="home"), ctx(rows.iloc[-1], page="video")]
    unseen = ctx(st[st["status"] == "monthly"].iloc[3], page="never", device="watch")
    return values, seen, unseen


VALUES, VALUE_CONTEXTS, VALUE_UNSEEN = _value_setup()


def _value_catalog() -> Catalog:
    return Catalog.from_records(
        [
            {"item_id": f"v{j}", "pitch": "deal" if j % 2 else "annual", "brand": f"b{j % 3}"}
            for j in range(5)
        ]
    )


def _value_feedback(pol: ValueRecommender, rng: np.random.Generator) -> list[ValueFeedback]:
    ids = pol.catalog.active_ids()
    out = []
    for _ in range(40):
        clicked = bool(rng.random() < 0.4)
        converted = clicked and rng.random() < 0.5
        plan = ("monthly", "annual")[int(rng.integers(2))] if converted else None
        ctx = VALUE_CONTEXTS[int(rng.integers(2))]
        out.append(ValueFeedback(ctx, ids[int(rng.integers(len(ids)))], clicked, plan))
    return out


VALUE = checks.PolicyCase(
    make=lambda: ValueRecommender(
        catalog=_value_catalog(),
        values=VALUES,
        crosses=[("delivery", "pitch"), ("status", "pitch"), ("page", "brand")],
        propensity_draws=300,
        recommender_params={
            "noise": 0.8,
            "priors": {"brand": GroupPrior(0.0, 0.3)},
            "default_prior": GroupPrior(0.0, 0.5),
            "bias_prior": GroupPrior(-1.0, 0.5),
            "shadow_sweeps": 3,
        },
        rng=5,
    ),
    contexts=VALUE_CONTEXTS,
    unseen_context=VALUE_UNSEEN,
    feedback=_value_feedback,
    decide_kwargs={"k": 2},
)

CASES = {
    "callouts": CALLOUTS,
    "value": VALUE,
    "layouts-exact": _layout_case(1024),
    "layouts-hill": _layout_case(0),
}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=lambda c: c.__name__)
def test_common_check(kind: str, check: Any) -> None:
    check(CASES[kind])


@pytest.mark.parametrize("kind", list(CASES))
def test_kinds_implement_the_protocol(kind: str) -> None:
    assert isinstance(CASES[kind].make(), Policy)


def test_version_1_snapshots_still_load() -> None:
    """Snapshots written by 2b975fc (per-kind format, schema 1) load and decide the same.

    The expected decisions were printed by that release (rng=7 for the callouts, then
    the decision seed; seed=7 for the layouts)."""
    rec = CalloutRecommender.from_bytes((DATA / "callouts_v1.bin").read_bytes())
    assert rec.policy_version == 1 and rec.crosses == [("page", "benefit")]
    assert rec.decide({"page": "home"}, seed=7).item_ids == ["b"]
    pol = LayoutPolicy.from_bytes((DATA / "layouts_v1.bin").read_bytes())
    assert pol.version_ == 1
    assert pol.decide({"device": "m"}, seed=7).layout == {"h": "h2", "i": "i2"}
    # and they re-save in the one codec
    assert rec.to_bytes().startswith(b"MEMBERLAB-POLICY\n")
    assert pol.to_bytes().startswith(b"MEMBERLAB-POLICY\n")


@pytest.mark.parametrize("kind", ["callouts", "layouts"])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "1"])
def test_exploration_is_validated(kind: str, bad: Any) -> None:
    with pytest.raises(DataValidationError, match="exploration =="):
        if kind == "callouts":
            CalloutRecommender(catalog=_catalog(), exploration=bad)
        else:
            LayoutPolicy(SPACE, exploration=bad)


def _callouts(exploration: float) -> CalloutRecommender:
    pol = CalloutRecommender(catalog=_catalog(), exploration=exploration, rng=0)
    pol.update(_callout_feedback(pol, np.random.default_rng(0)))
    return pol


def test_callouts_exploration_scales_the_thompson_spread() -> None:
    """exploration=0 is greedy on the posterior mean (propensity 1, the highest mean
    served whatever the seed); a larger scale serves that item less often (400 seeds
    each: share 1 at 0, less at 1, less still at 3; the shares differ by far more than
    their binomial s.d. of at most 0.025)."""
    ctx = CALLOUT_CONTEXTS[0]
    greedy = _callouts(0.0)
    best = greedy.click_rates(ctx).sort_values("mean").item_id.iloc[-1]
    ds = [greedy.decide(ctx, seed=s) for s in range(50)]
    assert {d.item_ids[0] for d in ds} == {best}
    assert all(d.propensities == [1.0] for d in ds)
    spread = []
    for e in (0.0, 1.0, 3.0):
        pol = _callouts(e)
        served = [pol.decide(ctx, seed=s, with_propensity=False).item_ids[0] for s in range(400)]
        spread.append(served.count(best) / 400)
        # the replay of a scaled draw is exact, and the snapshot keeps the scale
        back = CalloutRecommender.from_bytes(pol.to_bytes())
        assert back.exploration == e
        assert back.decide(ctx, seed=11) == pol.decide(ctx, seed=11)
    assert spread[0] == 1.0 > spread[1] > spread[2] + 0.1, spread


def test_layouts_exploration_zero_is_greedy() -> None:
    pol = LayoutPolicy(SPACE, exploration=0.0, exact_max_layouts=1024, rng=0)
    pol.update(_layout_feedback(pol, np.random.default_rng(1)))
    layouts = {
        tuple(sorted(pol.decide(LAYOUT_CONTEXTS[0], seed=s).layout.items())) for s in range(30)
    }
    assert len(layouts) == 1
    assert pol.decide(LAYOUT_CONTEXTS[0], seed=3).propensity == 1.0
    wide = LayoutPolicy(SPACE, exploration=3.0, exact_max_layouts=1024, rng=0)
    wide.update(_layout_feedback(wide, np.random.default_rng(1)))
    many = {
        tuple(sorted(wide.decide(LAYOUT_CONTEXTS[0], seed=s).layout.items())) for s in range(30)
    }
    assert len(many) > 1


@pytest.mark.parametrize("kind", ["callouts", "layouts-exact"])
def test_decision_ids_are_one_format_and_unique_per_decision(kind: str) -> None:
    """Every kind's decision id is ``memberlab.policy.new_decision_id``'s format (32 hex
    digits); decisions sharing a seed (a replay) get distinct ids and still compare
    equal. Callouts used ``d<version>-<seed>``: two decisions with one explicit seed
    shared an id, so their feedback could not be told apart."""
    case = CASES[kind]
    pol = case.make()
    ctx = case.contexts[0]
    a, b = pol.decide(ctx, seed=5), pol.decide(ctx, seed=5)
    assert a.decision_id != b.decision_id and a == b
    for d in (a, b):
        assert len(d.decision_id) == 32 and int(d.decision_id, 16) >= 0


def test_value_snapshot_keeps_refitted_priors_and_member_values() -> None:
    """A refit changes the underlying models' group priors (learned state, not
    constructor arguments): a snapshot must carry them, and the member values bit for bit."""
    pol = VALUE.make()
    rng = np.random.default_rng(3)
    log = [fb for _ in range(4) for fb in _value_feedback(pol, rng)]
    pol.update(log)
    pol.refit_priors(log, min_weights=1)
    back = ValueRecommender.from_bytes(pol.to_bytes())
    for name, m in pol.models.items():
        assert back.models[name].priors == m.priors, name
    np.testing.assert_array_equal(back.values.values, VALUES.values)
    assert back.values.states.equals(VALUES.states)
    for ctx in VALUE_CONTEXTS:
        assert back.decide(ctx, seed=11, k=2) == pol.decide(ctx, seed=11, k=2)


def test_value_snapshot_malformed_member_values_is_a_validation_error() -> None:
    from memberlab import DataValidationError

    data = VALUE.make().to_bytes()
    bad = data.replace(b'"state_cols": ["status"', b'"state_cols": ["nope"', 1)
    assert bad != data
    with pytest.raises(DataValidationError, match="state columns"):
        ValueRecommender.from_bytes(bad)
