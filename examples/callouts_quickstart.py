"""Callouts in five minutes: catalog, decisions with propensities, delayed feedback, refit.

.venv/bin/python examples/callouts_quickstart.py
"""

from __future__ import annotations

import warnings

import numpy as np

from memberlab import ConvergenceWarning
from memberlab.callouts import CalloutRecommender, Catalog, PendingLedger
from memberlab.callouts.simulator import CalloutWorld

warnings.simplefilter("ignore", ConvergenceWarning)

# A world with ground truth supplies items and the true click rates.
world = CalloutWorld(n_rounds=20_000, item_lifetime=20_000, rng=0)
records = world.item_records()[:20]
catalog = Catalog.from_records(records)
rec = CalloutRecommender(
    catalog=catalog, crosses=[("page", "benefit"), ("member", "benefit")], rng=1
)
ledger = PendingLedger(window=60.0, early_hold=5.0)
index = {it.item_id: j for j, it in enumerate(world.items)}
rng = np.random.default_rng(2)
log = []

for t in range(8_000):
    c = int(rng.integers(world.n_contexts))
    context = world.contexts[c]
    d = rec.decide(context, k=1)
    ledger.add_decision(d.decision_id, d.item_ids, context, t=float(t))
    p = world.probs[c, index[d.item_ids[0]]]
    if rng.random() < p:  # the click arrives a little later
        ledger.add_event(f"e{t}", d.decision_id, d.item_ids[0], "click", t=t + 5.0)
    if t % 500 == 499:  # a trainer closes windows and updates in batches
        closed = ledger.close(now=float(t))
        rec.update(closed)
        log.extend(closed)

result = rec.refit_priors(log, method="deconvolved")  # empirical-Bayes priors, replayed
print(result.fit.summary())
print(rec.click_rates({"member": True, "page": "video", "device": "app"}).head())
snapshot = rec.to_bytes()
assert CalloutRecommender.from_bytes(snapshot).decide({"page": "video"}, seed=7) == rec.decide(
    {"page": "video"}, seed=7
)
print(f"policy version {rec.policy_version}, snapshot {len(snapshot):,} bytes")
