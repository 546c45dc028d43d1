"""Candidate settings: the ``exploration`` key reaches the recommender."""

from __future__ import annotations

import pytest

from memberlab import DataValidationError
from memberlab.evaluation.candidates import build_recommender, expand_grid

ITEMS = [
    {"item_id": "a", "attributes": {"benefit": "video"}},
    {"item_id": "b", "attributes": {"benefit": "music"}},
]


def test_exploration_setting_builds_a_scaled_recommender() -> None:
    grid = expand_grid({"grid": {"exploration": [0.0, 0.5, 2.0]}})
    recs = [build_recommender(ITEMS, s) for s in grid]
    assert [r.exploration for r in recs] == [0.0, 0.5, 2.0]
    # greedy on the prior: the same item for every seed, with propensity 1
    d = [recs[0].decide({"page": "home"}, seed=s) for s in range(20)]
    assert len({x.item_ids[0] for x in d}) == 1 and {x.propensities[0] for x in d} == {1.0}


def test_bad_exploration_setting_names_the_field() -> None:
    with pytest.raises(DataValidationError, match="exploration == -1"):
        build_recommender(ITEMS, {"exploration": -1})
