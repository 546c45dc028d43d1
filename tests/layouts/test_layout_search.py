"""Hill climbing against exact enumeration; constraints are never violated (issue 4)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlab.layouts import FeatureMap, LayoutPolicy, LayoutSpace
from memberlab.layouts.search import (
    Enumeration,
    SearchTables,
    best_of_draws,
    exact_argmax,
    hill_climb,
    random_layouts,
)


def _tables(space: LayoutSpace, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    fm = FeatureMap(space)
    rng = np.random.default_rng(seed)
    main = rng.normal(size=(n_draws, fm.n_main))
    pair = np.concatenate(
        [rng.normal(size=(n_draws, fm.n_pair_features)), np.zeros((n_draws, 1))], axis=1
    )
    return main, pair


def _space(sizes: list[int], constraints: list[dict[str, str]] | None = None) -> LayoutSpace:
    return LayoutSpace(
        {f"s{d}": [f"v{v}" for v in range(n)] for d, n in enumerate(sizes)},
        constraints=constraints or [],
    )


def test_hill_climbing_equals_exact_with_generous_restarts() -> None:
    # seed 0; 40 draws; 300 restarts on spaces of at most 360 layouts: every draw's
    # global optimum is the best local optimum of some restart.
    for sizes, cons in [
        ([3, 4, 5], None),
        ([2, 3, 3, 4, 5], [{"s0": "v0", "s1": "v1"}, {"s2": "v2"}]),
        ([6, 2, 6], [{"s0": "v1", "s1": "v0", "s2": "v5"}]),
    ]:
        space = _space(sizes, cons)
        fm = FeatureMap(space)
        main, pair = _tables(space, 40, seed=0)
        R = 300
        rng = np.random.default_rng(1)
        starts = random_layouts(space, 40 * R, rng)
        L, s = hill_climb(
            SearchTables.build(fm),
            main,
            pair,
            np.repeat(np.arange(40), R),
            starts,
            max_steps=100,
        )
        assert not space.violations(L).any()
        EL, Es = exact_argmax(Enumeration(fm, max_layouts=10_000), main, pair)
        best = np.argmax(s.reshape(40, R), axis=1)
        np.testing.assert_allclose(s.reshape(40, R).max(axis=1), Es, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(L.reshape(40, R, -1)[np.arange(40), best], EL)
        # greedy pair-seeded starts on unequal slot sizes stay in range and allowed
        BL, _ = best_of_draws(
            SearchTables.build(fm), main, pair, starts, n_restarts=R, pair_starts=3, max_steps=100
        )
        assert not space.violations(BL).any() and np.all(space.sizes > BL)
        np.testing.assert_array_equal(BL, EL)


def test_policy_hill_climb_and_exact_agree_on_served_layouts() -> None:
    space = _space([3, 3, 4])
    hc = LayoutPolicy(space, exact_max_layouts=0, n_restarts=60, propensity_draws=0)
    ex = LayoutPolicy(space, propensity_draws=0)
    rng = np.random.default_rng(5)
    L = rng.integers(0, 3, size=(400, 3))
    y = rng.integers(0, 2, 400)
    hc.update_indices(L, y)
    ex.update_indices(L, y)
    for seed in range(30):
        assert hc.decide(seed=seed).layout == ex.decide(seed=seed).layout


constraint_st = st.dictionaries(
    st.sampled_from(["s0", "s1", "s2", "s3"]), st.sampled_from(["v0", "v1", "v2"]), min_size=1
)


@settings(max_examples=40, deadline=None)
@given(
    constraints=st.lists(constraint_st, min_size=1, max_size=6),
    seed=st.integers(0, 1000),
    exact=st.booleans(),
)
def test_constraints_are_never_violated(
    constraints: list[dict[str, str]], seed: int, exact: bool
) -> None:
    try:
        space = _space([3, 3, 3, 3], constraints)
    except ValueError:  # the constraints forbid every layout: refused up front
        return
    policy = LayoutPolicy(
        space,
        exact_max_layouts=1024 if exact else 0,
        n_restarts=3,
        propensity_draws=8,
        rng=seed,
    )
    rng = np.random.default_rng(seed)
    L = random_layouts(space, 50, rng)
    assert not space.violations(L).any()
    policy.update_indices(L, rng.integers(0, 2, 50))
    assert not space.violations(policy.decide_batch(64, rng=rng)).any()
    d = policy.decide()
    assert space.is_allowed(d.layout)
    assert d.propensity is not None and 0 < d.propensity <= 1
    for entry in policy.leaderboard(top=5):
        assert space.is_allowed(entry.layout)


def _basin_tables(
    D: int, N: int, n_draws: int, seed: int
) -> tuple[LayoutSpace, np.ndarray, np.ndarray, np.ndarray]:
    """Draws of a basin-shaped score: layout A has every main effect (+0.2 a slot), layout
    B (A shifted in every slot) only pair bonuses, 1.3x what B needs to win, plus N(0,
    0.01^2) jitter; A is a local optimum of single-slot moves. Returns A per draw too."""
    space = _space([N] * D)
    fm = FeatureMap(space)
    rng = np.random.default_rng(seed)
    main = rng.normal(0.0, 0.01, (n_draws, fm.n_main))
    pair = np.zeros((n_draws, fm.n_pair_features + 1))
    pair[:, :-1] = rng.normal(0.0, 0.01, (n_draws, fm.n_pair_features))
    gain = 1.3 * 2 * 0.2 / (D - 1)
    A = rng.integers(0, N, (n_draws, D))
    B = (A + rng.integers(1, N, (n_draws, D))) % N
    k = np.arange(n_draws)
    for d in range(D):
        main[k, fm.main_offset[d] - 1 + A[:, d]] += 0.2
    for p, (a, b) in enumerate(fm.pairs.tolist()):
        pair[k, fm.pair_offset[p] - 1 - fm.n_main + B[:, a] * N + B[:, b]] += gain
    return space, main, pair, A


def test_default_search_escapes_the_basin_trap() -> None:
    """Seed 11; 200 draws of basin-shaped scores on 5x6, 6x5 and 6x6 spaces. With the
    policy's defaults (4 restarts, one of them at the trap A as a stale incumbent would
    be, 1 pair-seeded greedy start) every draw's served layout is the exact argmax; with
    single-slot moves from the same starts alone, many draws stay in the trap."""
    for D, N in [(5, 6), (6, 5), (6, 6)]:
        space, main, pair, A = _basin_tables(D, N, 200, seed=11)
        pol = LayoutPolicy(space, exact_max_layouts=0)
        R = pol.n_restarts
        starts = random_layouts(space, 200 * R, np.random.default_rng(12))
        starts[::R] = A
        tables = SearchTables.build(pol.fmap)
        kwargs = {"n_restarts": R, "max_steps": pol.max_steps_}
        L, s = best_of_draws(tables, main, pair, starts, pair_starts=pol.pair_starts, **kwargs)
        EL, Es = exact_argmax(Enumeration(pol.fmap, max_layouts=50_000), main, pair)
        np.testing.assert_array_equal(L, EL)
        np.testing.assert_allclose(s, Es, rtol=0, atol=1e-12)
        L0, _ = best_of_draws(tables, main, pair, starts, pair_starts=0, **kwargs)
        assert np.mean(np.any(L0 != EL, axis=1)) > 0.2
