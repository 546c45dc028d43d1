"""The default service personalises (issue 8).

A real client drives ``memberlab serve`` (a subprocess, SQLite, no ``--crosses``) with
12,000 shoppers whose interests decide what they click. Ground truth (a probit, the
shape of the demo's): ``P(click) = Phi(-1.9 + b[benefit] + 1.1 [benefit in interests]
+ 0.5 [page shows the benefit] + 0.35 [member and video/music])``. Each shopper's click
is drawn with that probability and sent (with the decision's timestamp plus a delay of
0-20 simulated seconds; 60 s window); the trainer runs every 500 decisions
(``POST /v1/admin/train``). Between two trainer steps the policy cannot change, so the
500 decisions of a block are sent by four client threads at once (the shoppers and
their clicks are drawn up front, in order, so they do not depend on the threads); the
block's clicks are sent before its trainer step.

Measure: in the last quarter (decisions 9,001-12,000) the share of the
oracle-minus-random gap of the *expected* click rate the service captures,
``(E[p_served] - E[p_random]) / (E[p_oracle] - E[p_random])``, must be >= 0.70 (issue
8's check). Before issue 8 the default service ignored the context (no crosses) and
captured about 0.5 on this stream (seed 0: 0.52, measured with this script on
2b975fc); with all crosses by default it captures about 0.8 (seed 0). Seed 0 for the
shoppers and clicks; the policy's own seeds come from the OS, so the number varies a
little run to run (s.d. about 0.03 over 5 runs).

Run as a script for the numbers: ``python tests/service/test_personalisation.py
[--crosses page:benefit]``.
"""

from __future__ import annotations

import math
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _service_server import start_server

from memberlab.store import Store

BENEFIT_EFFECT = {
    "delivery": 0.35,
    "video": 0.15,
    "music": -0.05,
    "reading": -0.2,
    "photos": -0.45,
    "grocery": -0.1,
    "deals": 0.25,
}
BENEFITS = list(BENEFIT_EFFECT)
PAGES = {"electronics": "deals", "books": "reading", "films": "video", "food": "grocery"}
ITEMS = {
    f"{b}-{v}": {"benefit": b, "brand": f"{b}-brand", "colour": c, "price": p}
    for b in BENEFITS
    for v, c, p in (("a", "blue", 0.0), ("b", "orange", 4.99))
}
N_DECISIONS = 12_000
TRAIN_EVERY = 500
CLIENTS = 4  # concurrent client threads within a block of decisions
T0 = 1_767_225_600.0


def shopper(rng: np.random.Generator) -> dict[str, Any]:
    n = int(rng.integers(1, 3))
    return {
        "member": bool(rng.random() < 0.4),
        "page": str(rng.choice([*PAGES, "home"])),
        "interests": sorted(str(b) for b in rng.choice(BENEFITS, size=n, replace=False)),
        "device": str(rng.choice(["mobile", "desktop"])),
    }


def click_prob(ctx: dict[str, Any], item_id: str) -> float:
    b = ITEMS[item_id]["benefit"]
    z = -1.9 + BENEFIT_EFFECT[b]
    z += 1.1 * (b in ctx["interests"]) + 0.5 * (PAGES.get(ctx["page"]) == b)
    z += 0.35 * (ctx["member"] and b in ("video", "music"))
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


def run_stream(*server_args: str, n: int = N_DECISIONS, seed: int = 0) -> list[float]:
    """Gap captured in each quarter of ``n`` decisions against a fresh server."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/memberlab.db"
        store = Store(url)
        admin = store.create_api_key("admin")
        store.close()
        server = start_server(
            url,
            f"{tmp}/serve.log",
            "--attribution-window",
            "60",
            "--train-interval",
            "0",
            *server_args,
        )
        try:
            with server.client(admin, timeout=60.0) as c, ThreadPoolExecutor(CLIENTS) as pool:
                for item_id, attrs in ITEMS.items():
                    c.put(
                        f"/v1/callouts/items/{item_id}", json={"attributes": attrs}
                    ).raise_for_status()
                ids = list(ITEMS)

                def decide(t: int) -> str:
                    body = {"context": contexts[t], "timestamp": _iso(T0 + t)}
                    r = c.post("/v1/callouts/decisions", json=body)
                    r.raise_for_status()
                    d = r.json()
                    decision_ids[t] = d["decision_id"]
                    return str(d["items"][0]["item_id"])

                # Every random number of the stream is drawn up front, in order, so the
                # shoppers and their clicks do not depend on which client thread ran first.
                contexts = [shopper(rng) for _ in range(n)]
                u, delay = rng.random(n), rng.uniform(0, 20, n)
                decision_ids = [""] * n
                served, oracle, uniform = np.zeros(n), np.zeros(n), np.zeros(n)
                for start in range(0, n, TRAIN_EVERY):
                    # between two trainer steps the policy does not change, so the block's
                    # decisions can run concurrently (decisions take no lock)
                    block = range(start, min(start + TRAIN_EVERY, n))
                    events: list[dict[str, Any]] = []
                    for t, item in zip(block, pool.map(decide, block), strict=True):
                        probs = [click_prob(contexts[t], i) for i in ids]
                        served[t] = click_prob(contexts[t], item)
                        oracle[t], uniform[t] = max(probs), float(np.mean(probs))
                        if u[t] < served[t]:
                            events.append(
                                {
                                    "event_id": f"e{t}",
                                    "decision_id": decision_ids[t],
                                    "item_id": item,
                                    "type": "click",
                                    "timestamp": _iso(T0 + t + float(delay[t])),
                                }
                            )
                    for k in range(0, len(events), 100):
                        c.post(
                            "/v1/events", json={"events": events[k : k + 100]}
                        ).raise_for_status()
                    c.post("/v1/admin/train").raise_for_status()
        finally:
            server.stop()
    q = n // 4
    return [
        float(
            (served[k * q : (k + 1) * q].mean() - uniform[k * q : (k + 1) * q].mean())
            / (oracle[k * q : (k + 1) * q].mean() - uniform[k * q : (k + 1) * q].mean())
        )
        for k in range(4)
    ]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # about a minute idle; 7-8 minutes on a loaded 2-core machine
def test_default_service_captures_most_of_the_gap() -> None:
    gaps = run_stream()
    assert gaps[-1] >= 0.70, gaps
    assert gaps[-1] > gaps[0], gaps  # it learned


if __name__ == "__main__":
    import time

    t = time.perf_counter()
    print([round(g, 3) for g in run_stream(*sys.argv[1:])], f"{time.perf_counter() - t:.0f} s")
