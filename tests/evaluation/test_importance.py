"""Feature-group importance recovers which context feature drives clicks.

Simulator (seeds 0, 1, 2; 3,000 rounds each): three items (``video``, ``music``,
``photos``), logged uniformly (propensity 1/3). The page drives clicks: ``P(click) =
0.5`` when the item's benefit is the page's, else 0.05. A second context key, ``noise``
(three values drawn independently of everything), has no effect. The recommender may
use both (crosses ``page x benefit`` and ``noise x benefit``). Leaving out the page
must cost most of the off-policy value and of the held-out likelihood, leaving out the
noise almost nothing: the page scores 100 and the noise at most 25 on every seed, and
the page's value drop exceeds the noise's by at least 0.1 (the value of the
page-aware policy is about 0.5, of a page-blind one about 0.2).

The likelihood part does not separate them here: the default reward model has main
effects only, and under uniform logging the page has no main effect (every page's click
rate is 0.2), so leaving it out changes the held-out log-likelihood by under 0.005 nats
either way. Before the fix in ``feature_importance`` (scores scaled by the largest drop
of each kind), seed 1 scored the noise 100 too, from a likelihood change of 2e-4.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from memberlab.evaluation import BanditDataset
from memberlab.evaluation.candidates import feature_importance

ITEMS = ("video", "music", "photos")


def _logs(seed: int, n: int = 3000) -> BanditDataset:
    g = np.random.default_rng(seed)
    page = g.choice(ITEMS, n)
    noise = g.choice(["x", "y", "z"], n)
    item = g.choice(ITEMS, n)
    p = np.where(item == page, 0.5, 0.05)
    frame = pd.DataFrame({
        "ts": np.arange(n, dtype=float),
        "item": item,
        "reward": (g.random(n) < p).astype(float),
        "propensity": 1 / 3,
        "ctx.page": page,
        "ctx.noise": noise,
        "context": [json.dumps({"page": a, "noise": b}) for a, b in zip(page, noise, strict=True)],
    })  # fmt: skip
    return BanditDataset.from_frame(
        frame, action="item", reward="reward", propensity="propensity",
        context=["ctx.page", "ctx.noise"], actions=list(ITEMS),
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_driving_group_scores_clearly_higher(seed: int) -> None:
    rows = feature_importance(
        _logs(seed),
        items=[{"item_id": i, "attributes": {"benefit": i}} for i in ITEMS],
        settings={"crosses": [["page", "benefit"], ["noise", "benefit"]]},
        n_draws=100,
        rng=seed,
    )
    by = {r["group"]: r for r in rows}
    assert set(by) == {"ctx.page", "ctx.noise"}
    page, noise = by["ctx.page"], by["ctx.noise"]
    assert page["score"] == 100.0 and noise["score"] <= 25.0, rows
    assert page["value_change"] - noise["value_change"] >= 0.1, rows
    assert page["base_value"] > 0.35, rows  # the full policy learned the page
