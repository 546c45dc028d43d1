"""The library defects issue 8 lists, one test each (they fail on 2b975fc).

Each test names the defect it reproduces; the fixes live in :mod:`memberlab.policy`,
:mod:`memberlab.callouts` and :mod:`memberlab.layouts`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.bayes import GroupPrior
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.layouts import LayoutPolicy

ITEMS = [
    {"item_id": "a", "benefit": "video", "brand": "x"},
    {"item_id": "b", "benefit": "music", "brand": "y"},
    {"item_id": "c", "benefit": "delivery", "brand": "x"},
]
SPACE: dict[str, Any] = {
    "slots": {"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"]},
    "context": ["device"],
}


def _catalog() -> Catalog:
    return Catalog.from_records(ITEMS)


def test_callouts_round_trip_keeps_every_hyperparameter() -> None:
    """to_bytes/from_bytes reset shadow_bias_var, shadow_sweeps, prior_quantile."""
    rec = CalloutRecommender(
        catalog=_catalog(),
        crosses=[("page", "benefit")],
        shadow_bias_var=3.5,
        shadow_sweeps=2,
        prior_quantile=0.9,
        propensity_draws=17,
    )
    back = CalloutRecommender.from_bytes(rec.to_bytes())
    for name in ("shadow_bias_var", "shadow_sweeps", "prior_quantile", "propensity_draws"):
        assert getattr(back, name) == getattr(rec, name), name


def test_the_same_hyperparameter_has_the_same_name_in_every_kind() -> None:
    """Callouts said n_propensity_draws/update_mode where layouts say
    propensity_draws/update_method."""
    shared = {"propensity_draws", "update_method", "rng"}
    callouts = set(CalloutRecommender(catalog=_catalog()).get_params())
    layouts = set(LayoutPolicy(SPACE).get_params())
    assert shared <= callouts & layouts
    assert not {"n_propensity_draws", "update_mode"} & (callouts | layouts)


def test_snapshot_written_under_the_old_names_still_loads() -> None:
    rec = CalloutRecommender(catalog=_catalog(), propensity_draws=9, update_method="parallel")
    data = rec.to_bytes()
    head_end = data.index(b"\n", len(b"MEMBERLAB-POLICY\n"))
    head = data[:head_end].replace(b'"propensity_draws"', b'"n_propensity_draws"')
    head = head.replace(b'"update_method"', b'"update_mode"')
    back = CalloutRecommender.from_bytes(head + data[head_end:])
    assert (back.propensity_draws, back.update_method) == (9, "parallel")


@pytest.mark.parametrize("cls", [CalloutRecommender, LayoutPolicy])
def test_malformed_snapshot_raises_data_validation_error(cls: Any) -> None:
    """A callouts snapshot with a broken header raised a raw JSONDecodeError."""
    pol = (
        CalloutRecommender(catalog=_catalog()) if cls is CalloutRecommender else LayoutPolicy(SPACE)
    )
    data = pol.to_bytes()
    broken = data.replace(b'"', b"'", 3)
    with pytest.raises(DataValidationError):
        cls.from_bytes(broken)
    with pytest.raises(DataValidationError):
        cls.from_bytes(data[: len(data) // 2])


def test_callouts_decide_on_unseen_context_does_not_write() -> None:
    """A decision on an unseen context grew the posterior (so serving needed a lock)."""
    rec = CalloutRecommender(catalog=_catalog(), crosses=[("page", "benefit")], rng=0)
    rec.update([Feedback({"page": "home"}, "a", 1.0)])
    n = rec.state.n_features
    keys = rec.feature_index.keys()
    rec.decide({"page": "never-seen", "device": "watch"}, k=2)
    assert rec.state.n_features == n
    assert rec.feature_index.keys() == keys


def test_layouts_naive_refit_does_not_read_the_live_posterior() -> None:
    """refit_priors(method="naive") fitted on the live posterior, trained under the very
    prior it estimates. A refit from a wide-prior shadow model must not depend on the
    prior the live model was trained under."""
    rng = np.random.default_rng(0)
    events = [
        (
            {"device": ["m", "d"][int(rng.integers(2))]},
            {"headline": f"h{int(rng.integers(1, 3))}", "image": f"i{int(rng.integers(1, 4))}"},
            int(rng.random() < 0.3),
        )
        for _ in range(400)
    ]
    fits = []
    for var in (0.001, 1.0):
        pol = LayoutPolicy(SPACE, priors={"first_order": GroupPrior(0.0, var)}, rng=0)
        pol.update(events)
        fits.append(pol.refit_priors(events, method="naive").groups["first_order"].var)
    assert fits[0] == pytest.approx(fits[1], rel=1e-9)


def test_rng_int_means_the_same_in_both_kinds() -> None:
    """rng=5 was the decision seed in callouts but seeded a generator in layouts."""
    rec = CalloutRecommender(catalog=_catalog())
    pol = LayoutPolicy(SPACE)
    expected = int(np.random.default_rng(5).integers(0, 2**63))
    assert rec.decide({}, rng=5).seed == expected
    assert pol.decide({}, rng=5).seed == expected
    # and seed= is the decision seed in both
    assert rec.decide({}, seed=5).seed == 5
    assert pol.decide({}, seed=5).seed == 5


def test_one_seed_domain() -> None:
    """The service drew callouts seeds with randbits(63) and layouts with randbits(62);
    both kinds now take seeds in [0, 2**63) and refuse others with the same error."""
    from memberlab.policy import SEED_BOUND, new_seed

    assert SEED_BOUND == 2**63
    assert all(0 <= new_seed() < SEED_BOUND for _ in range(100))
    rec = CalloutRecommender(catalog=_catalog())
    pol = LayoutPolicy(SPACE)
    for p in (rec, pol):
        assert p.decide({}, seed=SEED_BOUND - 1).seed == SEED_BOUND - 1
        with pytest.raises(DataValidationError, match="seed"):
            p.decide({}, seed=SEED_BOUND)
        with pytest.raises(DataValidationError, match="seed"):
            p.decide({}, seed=-1)


def test_cross_with_unknown_attribute_is_refused() -> None:
    """crosses=[("page", "benefitt")] was accepted and never fired."""
    with pytest.raises(DataValidationError, match=r"benefitt.*benefit"):
        CalloutRecommender(catalog=_catalog(), crosses=[("page", "benefitt")])
    # with no items yet there is nothing to check against: accepted
    CalloutRecommender(catalog=Catalog(), crosses=[("page", "benefitt")])


def test_numeric_context_value_is_not_one_category_per_value() -> None:
    """{"age": 34.5} became one category per value."""
    rec = CalloutRecommender(catalog=_catalog(), crosses=[])
    rec.update([Feedback({"age": 20.0 + 0.01 * i}, "a", float(i % 2)) for i in range(200)])
    ages = [v for g, v in rec.feature_index.keys() if g == "ctx.age"]  # noqa: SIM118
    assert 1 <= len(ages) <= 3, ages


def test_unseen_features_are_scored_from_their_group_prior() -> None:
    """The read-only path scores an unseen context exactly as a model in which its
    features were registered at their group priors (and saw no data)."""
    rec = CalloutRecommender(
        catalog=_catalog(),
        cross_prior=GroupPrior(0.0, 0.3),
        priors={"ctx.page": GroupPrior(0.2, 0.5)},
        rng=0,
    )
    rec.update([Feedback({"page": "home", "age": 40.0}, "a", 1.0)])
    ctx = {"page": "never-seen", "age": 77.0, "device": "watch"}
    reg = CalloutRecommender.from_bytes(rec.to_bytes())
    reg.rows(ctx, ["a", "b", "c"])  # registers the features at their priors
    assert reg.state.n_features > rec.state.n_features
    for seed in range(5):
        a = rec.decide(ctx, k=3, seed=seed)
        b = reg.decide(ctx, k=3, seed=seed)
        assert a.item_ids == b.item_ids
        np.testing.assert_allclose([s.score for s in a.items], [s.score for s in b.items])
        assert [s.propensity for s in a.items] == [s.propensity for s in b.items]
    ra, rb = rec.click_rates(ctx), reg.click_rates(ctx)
    np.testing.assert_allclose(ra["mean"], rb["mean"], rtol=1e-12)


def test_a_stored_cross_that_no_longer_matches_still_loads() -> None:
    """Typo crosses are refused for new recommenders; a snapshot whose items came later
    (the service adds items after creating the policy) must still load."""
    rec = CalloutRecommender(catalog=Catalog(), crosses=[("page", "benefitt")])
    rec.catalog.add("a", {"benefit": "video"})
    assert rec.unknown_cross_attributes() == [("page", "benefitt")]
    back = CalloutRecommender.from_bytes(rec.to_bytes())
    assert back.unknown_cross_attributes() == [("page", "benefitt")]
    assert back.never_fired_crosses() == [("page", "benefitt")]


def test_concurrent_decisions_equal_sequential_ones() -> None:
    """Serving takes no lock: decisions from several threads at once (cold caches,
    unseen contexts) equal the same decisions made one at a time on a copy."""
    from concurrent.futures import ThreadPoolExecutor

    rec = CalloutRecommender(catalog=_catalog(), rng=0)
    rec.update([Feedback({"page": "home", "age": 30.0}, "a", 1.0)])
    twin = CalloutRecommender.from_bytes(rec.to_bytes())
    jobs = [({"page": f"p{i % 7}", "age": float(18 + i % 50), "tag": i % 3}, i) for i in range(400)]
    expected = [twin.decide(c, k=2, seed=s) for c, s in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: rec.decide(job[0], k=2, seed=job[1]), jobs))
    assert got == expected
