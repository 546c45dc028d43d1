"""Serve layouts with Thompson sampling, learn from clicks, and read the leaderboard.

Run: .venv/bin/python examples/layouts_quickstart.py
"""

from __future__ import annotations

import numpy as np

from memberlab.layouts import LayoutPolicy, LayoutSpace

space = LayoutSpace.from_dict(
    {
        "slots": {
            "headline": ["free-delivery", "save-more", "try-prime"],
            "image": ["van", "box", "phone"],
            "review": ["none", "stars", "quote"],
        },
        "constraints": [{"headline": "try-prime", "image": "van"}],
        "context": ["device"],
    }
)
policy = LayoutPolicy(space, rng=0)
rng = np.random.default_rng(1)


def true_click_rate(layout: dict[str, str], device: str) -> float:
    """A made-up truth: 'save-more' works with 'box', 'stars' helps on mobile."""
    p = 0.05
    if layout["headline"] == "save-more" and layout["image"] == "box":
        p += 0.08
    if layout["review"] == "stars" and device == "mobile":
        p += 0.04
    return p


for _ in range(20):  # 20 batches of 250 requests, posterior updated after each batch
    events = []
    for _ in range(250):
        ctx = {"device": str(rng.choice(["mobile", "desktop"]))}
        d = policy.decide(ctx)
        events.append((ctx, d.layout, int(rng.random() < true_click_rate(d.layout, ctx["device"]))))
    policy.update(events)

for device in ("mobile", "desktop"):
    print(f"top layouts on {device}:")
    for e in policy.leaderboard({"device": device}, top=3):
        print(f"  {e.rank}. {e.layout}  P(click) = {e.probability:.3f} (sd of score {e.sd:.2f})")
d = policy.decide({"device": "mobile"})
print("next decision:", d.layout, "propensity", d.propensity, "seed", d.seed)
