"""The learner recovers true effects from simulated data; simulators keep their promises."""

from __future__ import annotations

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.layouts import LayoutPolicy, LayoutSpace
from memberlab.layouts.simulate import (
    basin_layouts,
    basin_model,
    main_effects_anova,
    random_pairwise_model,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_main_and_interaction_effects(seed: int) -> None:
    """3 slots x 3 variants, all pairs; 30,000 uniformly random layouts (seeds 0-2 for the
    truth, 100 + seed for the data). Effects are the functional-ANOVA main effects and
    pairwise interactions of the latent score (identifiable under one-hot coding). True
    main effects reach |1.1| and interactions |0.25| on the probit scale; every estimate
    must be within 0.08 of the truth and the interactions correlate above 0.9."""
    sim = random_pairwise_model(
        n_slots=3, n_variants=3, bias=-0.5, main_scale=0.3, pair_scale=0.2, rng=seed
    )
    pol = LayoutPolicy(sim.space, rng=seed)
    rng = np.random.default_rng(100 + seed)
    L = rng.integers(0, 3, size=(30_000, 3))
    pol.update_indices(L, sim.sample_rewards(L, rng))
    all_layouts = sim.space.all_layouts()
    true_main, true_pair = main_effects_anova(sim.space, sim.latent(all_layouts))
    est = pol.fmap.rows(all_layouts).dot(pol.state_.mean)
    est_main, est_pair = main_effects_anova(sim.space, est)
    assert np.abs(est_main - true_main).max() < 0.08
    assert np.abs(est_pair - true_pair).max() < 0.08
    assert np.corrcoef(est_pair, true_pair)[0, 1] > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_basin_best_layout_is_reachable_only_through_interactions(seed: int) -> None:
    sim = basin_model(rng=seed)
    A, B = basin_layouts(sim)
    assert np.all(A != B)
    assert sim.is_local_optimum(A) and sim.is_local_optimum(B)
    p = sim.expected_reward(np.stack([A, B]))
    assert p[1] > p[0]
    # every single-slot change from A is downhill
    for d in range(sim.space.n_slots):
        for v in range(int(sim.space.sizes[d])):
            if v != A[d]:
                nb = A.copy()
                nb[d] = v
                assert sim.latent(nb[None, :])[0] < sim.latent(A[None, :])[0]


def test_basin_refuses_parameters_where_main_effects_win() -> None:
    with pytest.raises(DataValidationError, match=r"pair_gain == 0\.01"):
        basin_model(pair_gain=0.01)


def test_context_by_variant_terms_are_learned() -> None:
    """Seed 5: 6,000 random layouts; on mobile image 'i2' lifts the click rate from 0.1 to
    0.3, on desktop image 'i1' does. The leaderboard of each device must put its image
    first, and the context-by-variant weights must carry the difference (> 0.3 apart)."""
    space = LayoutSpace({"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"]}, context=["device"])
    pol = LayoutPolicy(space, rng=5)
    rng = np.random.default_rng(5)
    events = []
    for _ in range(6000):
        device = str(rng.choice(["mobile", "desktop"]))
        layout = space.from_indices(rng.integers(0, [2, 3]))
        good = layout["image"] == ("i2" if device == "mobile" else "i1")
        events.append(({"device": device}, layout, int(rng.random() < (0.3 if good else 0.1))))
    pol.update(events)
    assert pol.leaderboard({"device": "mobile"}, top=1)[0].layout["image"] == "i2"
    assert pol.leaderboard({"device": "desktop"}, top=1)[0].layout["image"] == "i1"
    w = {r["feature"]: r["mean"] for r in pol.coefficients()}
    assert w["device=mobile x image=i2"] - w["device=desktop x image=i2"] > 0.3
