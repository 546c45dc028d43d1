"""Off-policy evaluation on the recommender's own logs (issue 2).

The recommender serves a cold-start world (seed 0) with propensities logged; IPS and
SNIPS estimate the value of uniform random serving from those logs, and the estimate
must cover the simulator's true value (mean click rate over the logged contexts and
candidates).
"""

from __future__ import annotations

import warnings

import numpy as np

from memberlab import ConvergenceWarning
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.callouts.simulator import CalloutWorld
from memberlab.evaluation import ips, snips


def test_ips_on_logged_propensities_recovers_uniform_value() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)
    world = CalloutWorld(n_rounds=3_000, item_lifetime=10_000, rng=0)
    records = world.item_records()[:10]
    rec = CalloutRecommender(
        catalog=Catalog.from_records(records),
        crosses=[("page", "benefit")],
        propensity_draws=200,
        rng=1,
    )
    idx = {it.item_id: j for j, it in enumerate(world.items)}
    cands = [r["item_id"] for r in records]
    cand_idx = np.array([idx[c] for c in cands])
    rng = np.random.default_rng(2)
    rewards, props, truth = [], [], []
    pending: list[Feedback] = []
    for t in range(3_000):
        c = int(rng.integers(world.n_contexts))
        d = rec.decide(world.contexts[c])
        served = d.items[0]
        p = world.probs[c, idx[served.item_id]]
        r = float(rng.random() < p)
        rewards.append(r)
        props.append(served.propensity)
        truth.append(world.probs[c, cand_idx].mean())
        pending.append(Feedback(world.contexts[c], served.item_id, r))
        if t % 200 == 199:
            rec.update(pending)
            pending = []
    target = np.full(len(rewards), 1.0 / len(cands))
    true_value = float(np.mean(truth))
    for est in (ips(rewards, props, target), snips(rewards, props, target)):
        assert est.lower <= true_value <= est.upper, (est, true_value)
        assert est.se < 0.015  # informative: ESS ~ 330 of 3,000 here
