"""LayoutPolicy: decisions, replay, snapshots, errors, context, meta-priors (issue 4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from memberlab import DataValidationError, SchemaVersionError
from memberlab.bayes import GroupPrior
from memberlab.layouts import LayoutPolicy, LayoutSpace

SPEC: dict[str, Any] = {
    "slots": {
        "headline": ["h1", "h2", "h3"],
        "image": ["i1", "i2", "i3"],
        "body": ["b1", "b2"],
        "review": ["r1", "r2", "r3", "r4"],
    },
    "constraints": [{"headline": "h1", "image": "i3"}],
    "context": ["device", "page"],
}


def _trained(exact: int = 1024, seed: int = 0) -> LayoutPolicy:
    pol = LayoutPolicy(SPEC, exact_max_layouts=exact, propensity_draws=32, rng=seed)
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(300):
        ctx = {"device": str(rng.choice(["mobile", "desktop"])), "page": "home"}
        d = pol.decide(ctx)
        events.append((ctx, d.layout, int(rng.random() < 0.2)))
    pol.update(events)
    return pol


@pytest.mark.parametrize("exact", [1024, 0])
def test_decide_replays_exactly(exact: int) -> None:
    pol = _trained(exact)
    ctx = {"device": "mobile", "page": "home", "ignored": 1}
    d = pol.decide(ctx)
    assert pol.space.is_allowed(d.layout)
    assert d.policy_version == 1 and 0 < (d.propensity or 0) <= 1
    again = pol.replay(ctx, d.seed)
    assert (again.layout, again.propensity, again.seed) == (d.layout, d.propensity, d.seed)
    assert again.decision_id != d.decision_id
    # the served layout does not depend on how many propensity draws follow it
    pol.propensity_draws = 0
    assert pol.replay(ctx, d.seed).layout == d.layout


def test_snapshot_round_trip() -> None:
    pol = _trained(exact=0)
    blob = pol.to_bytes()
    assert b"pickle" not in blob[:200] and blob.startswith(b"MEMBERLAB-POLICY\n")
    back = LayoutPolicy.from_bytes(blob)
    assert back.space == pol.space and back.version_ == pol.version_
    np.testing.assert_array_equal(back.state_.mean, pol.state_.mean)
    np.testing.assert_array_equal(back.state_.var, pol.state_.var)
    assert back.context_values() == pol.context_values()
    ctx = {"device": "desktop", "page": "home"}
    for seed in range(5):
        a, b = pol.decide(ctx, seed=seed), back.decide(ctx, seed=seed)
        assert (a.layout, a.propensity) == (b.layout, b.propensity)
    assert pol.decide(ctx).seed == back.decide(ctx).seed  # generator state travels too
    assert [e.layout for e in back.leaderboard(ctx)] == [e.layout for e in pol.leaderboard(ctx)]


def test_snapshot_errors() -> None:
    blob = _trained().to_bytes()
    with pytest.raises(DataValidationError, match="not a memberlab policy snapshot"):
        LayoutPolicy.from_bytes(b"PK" + blob)
    bumped = blob.replace(b'"schema_version": 2', b'"schema_version": 99', 1)
    with pytest.raises(SchemaVersionError, match="schema_version 99"):
        LayoutPolicy.from_bytes(bumped)
    with pytest.raises(DataValidationError, match="malformed"):
        LayoutPolicy.from_bytes(blob.replace(b'"policy_version":', b'"policy_versio":', 1))
    with pytest.raises(DataValidationError, match="malformed"):
        LayoutPolicy.from_bytes(blob[: len(blob) // 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_restarts": 0}, r"n_restarts == 0, must be in \[1, 10000\]"),
        ({"propensity_draws": -1}, "propensity_draws == -1"),
        ({"max_steps": 0}, "max_steps == 0, must be >= 1"),
        ({"noise": 0.0}, "noise == 0.0"),
        ({"update_method": "magic"}, "update_method == 'magic'"),
        ({"priors": {"third_order": GroupPrior()}}, "unknown group 'third_order'"),
        ({"exact_max_layouts": 1.5}, "exact_max_layouts == 1.5, must be an int"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        LayoutPolicy(SPEC, **kwargs)


def test_bad_events() -> None:
    pol = LayoutPolicy(SPEC)
    good = {"headline": "h1", "image": "i1", "body": "b1", "review": "r1"}
    with pytest.raises(DataValidationError, match="reward == 2, must be 0 or 1"):
        pol.update([(None, good, 2)])
    with pytest.raises(DataValidationError, match="missing slot 'review'"):
        pol.update([(None, {"headline": "h1", "image": "i1", "body": "b1"}, 1)])
    with pytest.raises(DataValidationError, match=r"must be a .context, layout, reward. triple"):
        pol.update([(None, good)])  # type: ignore[list-item]
    with pytest.raises(DataValidationError, match=r"context\['device'\] == \[1\]"):
        pol.decide({"device": [1]})
    assert pol.version_ == 0


def test_context_values_grow_the_model() -> None:
    pol = LayoutPolicy(SPEC, rng=1)
    n0 = pol.state_.n_features
    layout = {"headline": "h2", "image": "i1", "body": "b1", "review": "r1"}
    pol.update([({"device": "mobile"}, layout, 1), ({"device": "tv", "page": 3}, layout, 0)])
    assert pol.context_values() == [("device", "mobile"), ("device", "tv"), ("page", "3")]
    assert pol.state_.n_features == n0 + 3 * pol.fmap.block_size
    # an unseen value draws its terms from the context prior; still a valid decision
    assert pol.space.is_allowed(pol.decide({"device": "watch"}).layout)
    top = pol.leaderboard({"device": "mobile"}, top=3)
    assert [e.rank for e in top] == [1, 2, 3]
    assert top[0].mean >= top[1].mean >= top[2].mean


def test_learning_moves_the_leaderboard() -> None:
    space = LayoutSpace({"a": ["x", "y"], "b": ["u", "v", "w"]})
    pol = LayoutPolicy(space, rng=0)
    rng = np.random.default_rng(0)
    L = np.stack([rng.integers(0, 2, 3000), rng.integers(0, 3, 3000)], axis=1)
    best = (L[:, 0] == 1) & (L[:, 1] == 2)
    y = (rng.random(3000) < np.where(best, 0.5, 0.1)).astype(int)
    pol.update_indices(L, y)
    top = pol.leaderboard(top=2)
    assert top[0].layout == {"a": "y", "b": "w"}
    assert 0.4 < top[0].probability < 0.6


def test_large_space_leaderboard_uses_hill_climbing() -> None:
    space = LayoutSpace({f"s{d}": [f"v{v}" for v in range(6)] for d in range(8)})
    pol = LayoutPolicy(space, propensity_draws=4, rng=0)
    rng = np.random.default_rng(0)
    L = rng.integers(0, 6, size=(500, 8))
    pol.update_indices(L, (L[:, 0] == 2).astype(int))
    top = pol.leaderboard(top=3, max_enumerate=1000)
    assert top[0].layout["s0"] == "v2" and len(top) == 3


@pytest.mark.filterwarnings("ignore::memberlab.ConvergenceWarning")
def test_refit_priors_and_replay() -> None:
    space = LayoutSpace({f"s{d}": [f"v{v}" for v in range(4)] for d in range(4)})
    pol = LayoutPolicy(space, rng=0)
    rng = np.random.default_rng(2)
    L = rng.integers(0, 4, size=(2000, 4))
    y = (rng.random(2000) < 0.1 + 0.1 * (L[:, 0] == 1)).astype(int)
    events = [(None, space.from_indices(row), int(r)) for row, r in zip(L, y, strict=True)]
    pol.update(events)
    fit = pol.refit_priors(method="deconvolved", replay=events)
    assert set(fit.groups) == {"first_order", "second_order"}
    assert pol.group_prior("first_order").var == pytest.approx(fit.groups["first_order"].var)
    assert pol.version_ == 3  # update, reset to the new prior, replay


def test_coefficients_and_json_forms() -> None:
    pol = _trained()
    rows = pol.coefficients()
    assert len(rows) == pol.state_.n_features
    names = [r["feature"] for r in rows]
    assert names[0] == "bias" and "headline=h1" in names
    assert "headline=h1 x image=i2" in names and "device=mobile x review=r4" in names
    assert {r["group"] for r in rows} == {"bias", "first_order", "second_order", "context"}
    d = pol.decide({"device": "mobile"}).to_dict()
    assert set(d) == {"decision_id", "layout", "propensity", "policy_version", "seed"}
    assert set(pol.leaderboard(top=1)[0].to_dict()) == {
        "rank",
        "layout",
        "mean",
        "sd",
        "probability",
    }


@pytest.mark.parametrize("exact", [1024, 0])
def test_propensity_matches_serving_frequency(exact: int) -> None:
    """Seed 3: a posterior after 400 events on a 3 x 3 space. With 4,000 propensity draws
    the estimate of each served layout must be within 0.04 of its frequency over 4,000
    Thompson decisions (both Monte Carlo; s.e. of each <= 0.008)."""
    space = LayoutSpace({"a": ["x", "y", "z"], "b": ["u", "v", "w"]})
    pol = LayoutPolicy(space, exact_max_layouts=exact, propensity_draws=4000, rng=3)
    rng = np.random.default_rng(3)
    L = rng.integers(0, 3, size=(400, 2))
    pol.update_indices(L, (rng.random(400) < np.where(L[:, 0] == 1, 0.3, 0.1)).astype(int))
    served = pol.decide_batch(4000, rng=rng)
    codes, counts = np.unique(space.codes(served), return_counts=True)
    freq = dict(zip(codes.tolist(), (counts / 4000).tolist(), strict=True))
    for seed in range(4):
        d = pol.decide(seed=seed)
        assert d.propensity == pytest.approx(freq.get(space.encode(d.layout), 0.0), abs=0.04)


def test_parallel_update_learns_like_sequential() -> None:
    space = LayoutSpace({"a": ["x", "y"], "b": ["u", "v", "w"]})
    seq = LayoutPolicy(space, update_method="sequential")
    par = LayoutPolicy(space, update_method="parallel")
    rng = np.random.default_rng(4)
    for _ in range(20):
        L = np.stack([rng.integers(0, 2, 200), rng.integers(0, 3, 200)], axis=1)
        y = (rng.random(200) < np.where(L[:, 0] == 1, 0.3, 0.1)).astype(int)
        seq.update_indices(L, y)
        par.update_indices(L, y)
    assert seq.leaderboard(top=1)[0].layout["a"] == par.leaderboard(top=1)[0].layout["a"] == "y"


def test_snapshot_without_pair_starts_still_loads() -> None:
    """Snapshots written before ``pair_starts`` existed lack it; they load with the default."""
    pol = _trained(exact=0)
    blob = pol.to_bytes()
    assert b', "pair_starts": 1' in blob
    old = LayoutPolicy.from_bytes(blob.replace(b', "pair_starts": 1', b"", 1))
    assert old.pair_starts == 1 and old.version_ == pol.version_
    ctx = {"device": "mobile", "page": "home"}
    assert old.decide(ctx, seed=3).layout == pol.decide(ctx, seed=3).layout
    with pytest.raises(DataValidationError, match="pair_starts == -1"):
        LayoutPolicy(SPEC, pair_starts=-1)
