"""A shopper stream with a known truth for holdout tests, driven through a real server.

Units (shoppers) have a fixed interest and a personal click propensity; each request
picks a unit at random (so units repeat), a page, and sends ``unit_id`` (a share of
requests send none: assigned per request). Ground truth, a probit:
``P(click) = Phi(-1.3 + b[benefit] + 1.6 [benefit == interest] + e_unit)``, with
``e_unit ~ N(0, 0.4^2)``. The policy can learn the interest (a context key); the holdout
is served uniformly, so the policy beats it by a margin that grows as it learns.

The truth of what the readout estimates: each arm's expected click rate per decision
given what it served, ``mean_i P(click | context_i, served_i)`` over the arm's closed
decisions; the true lift is the policy arm's minus the holdout's. (The holdout's
expectation over its uniform draw, ``mean_i mean_a P(click | context_i, a)``, is
reported too.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np

BENEFIT_EFFECT = {"delivery": 0.3, "video": 0.1, "music": -0.1, "photos": -0.3}
ITEMS = {f"{b}-1": {"benefit": b} for b in BENEFIT_EFFECT}
PAGES = ("home", "films", "books")
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def click_prob(unit: dict[str, Any], item_id: str) -> float:
    b = ITEMS[item_id]["benefit"]
    z = -1.3 + BENEFIT_EFFECT[b] + 1.6 * (b == unit["interest"]) + unit["effect"]
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def make_units(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    benefits = list(BENEFIT_EFFECT)
    return [
        {
            "id": f"shopper-{j}",
            "interest": str(rng.choice(benefits)),
            "effect": float(rng.normal(0, 0.4)),
        }
        for j in range(n)
    ]


@dataclass
class Served:
    """What the client saw: per decision id, its arm, expected reward and unit."""

    arm: dict[str, str] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)
    uniform: dict[str, float] = field(default_factory=dict)
    unit: dict[str, str | None] = field(default_factory=dict)
    unit_arm: dict[str, str] = field(default_factory=dict)
    propensity: dict[str, float] = field(default_factory=dict)
    clicks: int = 0
    t: float = T0

    def truth(self, decision_ids: set[str] | None = None) -> dict[str, float]:
        """Expected reward per decision of each arm, and the lift (see the module doc)."""
        ids = [d for d in self.arm if decision_ids is None or d in decision_ids]
        out: dict[str, float] = {}
        for a in ("holdout", "policy"):
            sel = [d for d in ids if self.arm[d] == a]
            out[a] = float(np.mean([self.expected[d] for d in sel]))
            out[f"{a}_uniform"] = float(np.mean([self.uniform[d] for d in sel]))
        out["lift"] = out["policy"] - out["holdout"]
        return out


def drive(
    client: httpx.Client,
    units: list[dict[str, Any]],
    n: int,
    rng: np.random.Generator,
    served: Served,
    *,
    no_unit_share: float = 0.1,
    step: float = 3.0,
    flush_every: int = 5,
) -> Served:
    """``n`` decisions for random units, clicks sent as events (data-clock timestamps).

    Clicks are posted every ``flush_every`` decisions (15 s of data time by default):
    the trainer closes a window once the data clock passes it, and a click that arrives
    later is stored but not learned from (nor counted as a reward)."""
    events: list[dict[str, Any]] = []
    ids = list(ITEMS)
    for j in range(n):
        served.t += step
        unit = units[int(rng.integers(len(units)))]
        send_unit = rng.random() >= no_unit_share
        body: dict[str, Any] = {
            "context": {"page": str(rng.choice(PAGES)), "interest": unit["interest"]},
            "timestamp": iso(served.t),
        }
        if send_unit:
            body["unit_id"] = unit["id"]
        r = client.post("/v1/callouts/decisions", json=body)
        assert r.status_code == 200, r.text
        d = r.json()
        item = d["items"][0]["item_id"]
        did = d["decision_id"]
        p = click_prob(unit, item)
        served.arm[did] = d["assignment"]
        served.expected[did] = p
        served.uniform[did] = float(np.mean([click_prob(unit, i) for i in ids]))
        served.unit[did] = unit["id"] if send_unit else None
        served.propensity[did] = d["items"][0]["propensity"]
        assert d["assignment_unit"] == ("unit" if send_unit else "request")
        if send_unit:
            prev = served.unit_arm.setdefault(unit["id"], d["assignment"])
            assert prev == d["assignment"], f"{unit['id']} changed arm"  # sticky
        if rng.random() < p:
            served.clicks += 1
            events.append(
                {"event_id": f"e-{did}", "decision_id": did, "item_id": item, "type": "click",
                 "timestamp": iso(served.t + float(rng.uniform(0, 10)))}
            )  # fmt: skip
        if events and (j + 1) % flush_every == 0:
            assert client.post("/v1/events", json={"events": events}).status_code == 202
            events = []
    if events:
        assert client.post("/v1/events", json={"events": events}).status_code == 202
    return served


def close_windows(client: httpx.Client, served: Served, *, timeout: float = 60.0) -> None:
    """Move the data clock past every window (one decision an hour later, left pending)
    and wait until the background trainer has closed the rest."""
    import time

    served.t += 3600.0
    r = client.post("/v1/callouts/decisions", json={"context": {}, "timestamp": iso(served.t)})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + timeout
    while True:
        stats = client.get("/v1/admin/stats").json()
        if stats["pending"] <= 1:
            return
        assert time.monotonic() < deadline, f"the trainer did not close the windows: {stats}"
        time.sleep(0.3)
