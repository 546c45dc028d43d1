"""The demo: a real server, a sample catalog, simulated shoppers who click with delays.

:func:`run` starts ``memberlab serve`` on a free localhost port (a subprocess, SQLite in a
temporary folder unless told otherwise), loads a catalog of membership-benefit callouts
and talks to the service over HTTP with an API key, exactly as a website would:
decisions with timestamps, clicks that arrive later, a trainer step after each round.
Ground truth is a known click model, so what the service learned can be checked. No
printing here: each round is reported to a callback (the CLI renders it).
"""

from __future__ import annotations

import heapq
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np

from memberlab._rng import as_generator
from memberlab.service.launch import free_port, running_server
from memberlab.store import Store

__all__ = [
    "CATALOG",
    "CatalogWorld",
    "ClickModel",
    "DemoRound",
    "DemoSummary",
    "SimulatorWorld",
    "free_port",
    "run",
    "running_server",
]

BENEFITS = ("delivery", "video", "music", "reading", "photos", "grocery", "deals")

# Sample catalog: membership-benefit callouts with brand/colour/price/category attributes.
CATALOG: dict[str, dict[str, Any]] = {
    "free-delivery": {
        "benefit": "delivery",
        "brand": "prime",
        "colour": "blue",
        "price": 0.0,
        "category": "shipping",
    },
    "same-day": {
        "benefit": "delivery",
        "brand": "prime-now",
        "colour": "orange",
        "price": 2.99,
        "category": "shipping",
    },
    "video-films": {
        "benefit": "video",
        "brand": "prime-video",
        "colour": "navy",
        "price": 8.99,
        "category": "entertainment",
    },
    "video-sport": {
        "benefit": "video",
        "brand": "prime-video",
        "colour": "green",
        "price": 8.99,
        "category": "sport",
    },
    "music-unlimited": {
        "benefit": "music",
        "brand": "amazon-music",
        "colour": "teal",
        "price": 9.99,
        "category": "entertainment",
    },
    "reading-kindle": {
        "benefit": "reading",
        "brand": "kindle",
        "colour": "black",
        "price": 0.0,
        "category": "books",
    },
    "photos-storage": {
        "benefit": "photos",
        "brand": "amazon-photos",
        "colour": "white",
        "price": 0.0,
        "category": "storage",
    },
    "grocery-fresh": {
        "benefit": "grocery",
        "brand": "fresh",
        "colour": "green",
        "price": 3.99,
        "category": "food",
    },
    "deals-early": {
        "benefit": "deals",
        "brand": "prime-day",
        "colour": "yellow",
        "price": 0.0,
        "category": "shopping",
    },
}

PAGES = {"electronics": "deals", "books": "reading", "films": "video", "food": "grocery"}
CROSSES = "page:benefit,interests:benefit,member:benefit"


@dataclass(frozen=True, slots=True)
class ClickModel:
    """Ground truth: P(click) = Phi(base + benefit + interest/page/member terms)."""

    base: float = -1.9
    benefit: dict[str, float] = field(
        default_factory=lambda: {
            "delivery": 0.35,
            "video": 0.15,
            "music": -0.05,
            "reading": -0.2,
            "photos": -0.45,
            "grocery": -0.1,
            "deals": 0.25,
        }
    )
    interest: float = 0.9
    page: float = 0.5
    member_video: float = 0.35
    colour: dict[str, float] = field(default_factory=lambda: {"orange": 0.15, "white": -0.1})

    def prob(self, context: dict[str, Any], item_id: str) -> float:
        a = CATALOG[item_id]
        z = self.base + self.benefit[a["benefit"]] + self.colour.get(a["colour"], 0.0)
        if a["benefit"] in context["interests"]:
            z += self.interest
        if PAGES.get(context["page"]) == a["benefit"]:
            z += self.page
        if context["member"] and a["benefit"] in ("video", "music"):
            z += self.member_video
        return 0.5 * math.erfc(-z / math.sqrt(2.0))


class World(Protocol):
    """Ground truth the demo's shoppers follow."""

    items: dict[str, dict[str, Any]]
    crosses: str

    def shopper(self, rng: np.random.Generator) -> dict[str, Any]: ...

    def prob(self, context: dict[str, Any], item_id: str) -> float: ...

    def average(self, item_id: str) -> float: ...


class CatalogWorld:
    """The sample catalog of benefit callouts with the :class:`ClickModel` truth."""

    def __init__(self) -> None:
        self.items = CATALOG
        self.crosses = CROSSES
        self.model = ClickModel()
        self._population = [shopper(np.random.default_rng(10_000 + i)) for i in range(2000)]

    def shopper(self, rng: np.random.Generator) -> dict[str, Any]:
        return shopper(rng)

    def prob(self, context: dict[str, Any], item_id: str) -> float:
        return self.model.prob(context, item_id)

    def average(self, item_id: str) -> float:
        return float(np.mean([self.model.prob(c, item_id) for c in self._population]))


class SimulatorWorld:
    """The callouts library's :class:`~memberlab.callouts.simulator.CalloutWorld`:
    random items (benefit, brand, colour, price, title), contexts (member, page,
    device) with page x benefit and member x benefit effects, no churn."""

    def __init__(self, *, n_items: int, rounds: int, seed: int) -> None:
        from memberlab.callouts.simulator import CalloutWorld

        self.world = CalloutWorld(
            n_rounds=rounds,
            n_active=n_items,
            item_lifetime=10 * rounds + 10,
            base_rate=0.05,
            rng=seed,
        )
        live = self.world.items[:n_items]
        self.items = {it.item_id: dict(it.attributes) for it in live}
        self._col = {it.item_id: j for j, it in enumerate(self.world.items)}
        self._row = {self._key(c): k for k, c in enumerate(self.world.contexts)}
        self.crosses = "page:benefit,member:benefit"

    @staticmethod
    def _key(c: dict[str, Any]) -> tuple[Any, ...]:
        return (c["member"], c["page"], c["device"])

    def shopper(self, rng: np.random.Generator) -> dict[str, Any]:
        return dict(self.world.contexts[int(rng.integers(len(self.world.contexts)))])

    def prob(self, context: dict[str, Any], item_id: str) -> float:
        return float(self.world.probs[self._row[self._key(context)], self._col[item_id]])

    def average(self, item_id: str) -> float:
        return float(self.world.probs[:, self._col[item_id]].mean())


def shopper(rng: np.random.Generator) -> dict[str, Any]:
    n = int(rng.integers(1, 3))
    return {
        "member": bool(rng.random() < 0.4),
        "page": str(rng.choice([*PAGES, "home"])),
        "interests": sorted(str(b) for b in rng.choice(BENEFITS, size=n, replace=False)),
        "device": str(rng.choice(["mobile", "desktop"])),
    }


@dataclass(frozen=True, slots=True)
class DemoRound:
    round: int
    decisions: int
    clicks: int
    ctr: float
    oracle_ctr: float
    random_ctr: float
    policy_version: int
    closed: int
    seconds: float


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo measured.

    ``context`` is the shopper context shown; ``rates`` holds, for each item, the true
    click probability in that context and the service's posterior mean and interval for
    that same context (``POST /v1/callouts/rates``). ``coverage`` is the share of
    (context, item) pairs, over ``n_coverage_contexts`` shoppers drawn from the
    population, whose true click probability lies inside the service's ``level``
    interval: close to ``level`` when the intervals are honest.
    """

    rounds: list[DemoRound]
    items: list[dict[str, Any]]
    stats: dict[str, Any]
    base_url: str
    database_url: str
    seconds: float
    served_share: dict[str, float]
    context: dict[str, Any] = field(default_factory=dict)
    rates: list[dict[str, Any]] = field(default_factory=list)
    coverage: float = float("nan")
    level: float = 0.95
    n_coverage_contexts: int = 0
    plot: str | None = None


def run(
    *,
    rounds: int = 12,
    shoppers: int = 300,
    seed: int = 0,
    database_url: str | None = None,
    on_round: Callable[[DemoRound], None] | None = None,
    on_start: Callable[[str, str], None] | None = None,
    world: str = "catalog",
    plot: str | os.PathLike[str] | None = None,
    keep_serving: Callable[[str, str], None] | None = None,
) -> DemoSummary:
    """Run the demo and return what the service learned against the truth.

    Shoppers arrive one simulated second apart; a shopper clicks the served callout with
    the ground-truth probability, after an exponential delay (mean 60 s); clicks later
    than the 300 s attribution window are lost. Timestamps are sent with every request,
    so windows close on the data's own clock and the demo runs faster than real time.

    ``plot``: write a PNG there (click rate by round; truth against the posterior for
    the context shown). ``keep_serving``: called with the dashboard URL and the admin key
    after the run while the service is still up; the service stops when it returns.
    """
    rng = as_generator(seed)
    truth: World
    if world == "catalog":
        truth = CatalogWorld()
    elif world == "simulator":
        truth = SimulatorWorld(n_items=12, rounds=rounds, seed=seed)
    else:
        raise ValueError(f"world == {world!r}, must be 'catalog' or 'simulator'.")
    tmp = None
    if database_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="memberlab-demo-")
        database_url = f"sqlite:///{os.path.join(tmp.name, 'memberlab.db')}"
    t_start = time.perf_counter()
    try:
        store = Store(database_url)
        admin = store.create_api_key("admin", label="demo")
        store.close()
        args = ("--attribution-window", "300", "--train-interval", "0", "--crosses", truth.crosses)
        with running_server(database_url, *args) as server:
            base = server.base_url
            if on_start is not None:
                on_start(base, database_url)
            headers = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30.0) as client:
                summary = _drive(client, rng, truth, rounds, shoppers, on_round, t_start, base)
            if plot is not None:
                summary = _replace(summary, plot=str(write_plot(summary, plot)))
            if keep_serving is not None:
                keep_serving(f"{base}/dashboard", admin)
            return summary
    finally:
        if tmp is not None:
            tmp.cleanup()


def _check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}")
    return r.json()


def _drive(
    client: httpx.Client,
    rng: np.random.Generator,
    truth: World,
    rounds: int,
    shoppers: int,
    on_round: Callable[[DemoRound], None] | None,
    t_start: float,
    base: str,
) -> DemoSummary:
    catalog = truth.items
    for item_id, attrs in catalog.items():
        _check(client.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs}))
    t0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: simulated time, seconds
    now = t0
    future: list[tuple[float, int, dict[str, Any]]] = []  # (time, tiebreak, event)
    served = dict.fromkeys(catalog, 0)
    clicked = dict.fromkeys(catalog, 0)
    history: list[DemoRound] = []
    n_event = 0
    ids = list(catalog)
    for rnd in range(1, rounds + 1):
        t_round = time.perf_counter()
        clicks = 0
        exp_ctr = oracle = uniform = 0.0
        for _ in range(shoppers):
            now += 1.0
            ctx = truth.shopper(rng)
            stamp = _iso(now)
            d = _check(
                client.post("/v1/callouts/decisions", json={"context": ctx, "timestamp": stamp})
            )
            item = d["items"][0]["item_id"]
            served[item] += 1
            p = truth.prob(ctx, item)
            hit = bool(rng.random() < p)
            clicked[item] += int(hit)
            probs = [truth.prob(ctx, i) for i in ids]
            exp_ctr += p
            oracle += max(probs)
            uniform += float(np.mean(probs))
            if hit:
                clicks += 1
                delay = float(rng.exponential(60.0))
                n_event += 1
                ev = {
                    "event_id": f"click-{n_event}",
                    "decision_id": d["decision_id"],
                    "item_id": item,
                    "type": "click",
                    "timestamp": _iso(now + delay),
                }
                heapq.heappush(future, (now + delay, n_event, ev))
            due = []
            while future and future[0][0] <= now:
                due.append(heapq.heappop(future)[2])
            if due:
                _check(client.post("/v1/events", json={"events": due}))
        trained = _check(client.post("/v1/admin/train"))
        row = DemoRound(
            round=rnd,
            decisions=shoppers,
            clicks=clicks,
            ctr=exp_ctr / shoppers,
            oracle_ctr=oracle / shoppers,
            random_ctr=uniform / shoppers,
            policy_version=int(trained["policy_version"]),
            closed=int(trained["closed"]),
            seconds=time.perf_counter() - t_round,
        )
        history.append(row)
        if on_round is not None:
            on_round(row)
    listed = _check(client.get("/v1/callouts/items"))["items"]
    for it in listed:
        it["truth"] = truth.average(it["item_id"])
        it["served"] = served[it["item_id"]]
        it["observed"] = clicked[it["item_id"]] / max(served[it["item_id"]], 1)
    stats = _check(client.get("/v1/admin/stats"))
    total = sum(served.values())
    level = 0.95
    pop = np.random.default_rng(20_000)
    shown = truth.shopper(pop)
    rates = _context_rates(client, truth, shown, level)
    contexts = [shown] + [truth.shopper(pop) for _ in range(COVERAGE_CONTEXTS - 1)]
    inside = [
        r["lower"] <= r["truth"] <= r["upper"]
        for c in contexts
        for r in (rates if c is shown else _context_rates(client, truth, c, level))
        if r["lower"] is not None
    ]
    return DemoSummary(
        rounds=history,
        items=listed,
        stats=stats,
        base_url=base,
        database_url="",
        seconds=time.perf_counter() - t_start,
        served_share={k: v / total for k, v in served.items()},
        context=shown,
        rates=rates,
        coverage=float(np.mean(inside)) if inside else float("nan"),
        level=level,
        n_coverage_contexts=len(contexts),
    )


COVERAGE_CONTEXTS = 40


def _context_rates(
    client: httpx.Client, truth: World, context: dict[str, Any], level: float
) -> list[dict[str, Any]]:
    body = _check(client.post("/v1/callouts/rates", json={"context": context, "level": level}))
    return [{**r, "truth": truth.prob(context, r["item_id"])} for r in body["items"]]


def _replace(summary: DemoSummary, **changes: Any) -> DemoSummary:
    import dataclasses

    return dataclasses.replace(summary, **changes)


def write_plot(summary: DemoSummary, path: str | os.PathLike[str]) -> str:
    """A PNG: expected click rate by round (policy, oracle, uniform), and the true click
    rate of each item for the context shown against the posterior mean and interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    r = [x.round for x in summary.rounds]
    a.plot(r, [x.oracle_ctr for x in summary.rounds], "k--", label="oracle")
    a.plot(r, [x.ctr for x in summary.rounds], "o-", label="service (Thompson sampling)")
    a.plot(r, [x.random_ctr for x in summary.rounds], ":", label="uniform random")
    a.set(xlabel="round", ylabel="expected click rate", title="Learning over rounds")
    a.legend()
    rows = sorted(summary.rates, key=lambda x: -x["truth"])
    y = np.arange(len(rows))
    mean = np.array([x["mean"] for x in rows], dtype=float)
    lo = np.array([x["lower"] for x in rows], dtype=float)
    hi = np.array([x["upper"] for x in rows], dtype=float)
    b.errorbar(
        mean,
        y,
        xerr=[mean - lo, hi - mean],
        fmt="o",
        label=f"posterior, {summary.level:.0%} interval",
    )
    b.plot([x["truth"] for x in rows], y, "rx", markersize=9, label="truth")
    b.set_yticks(y, [x["item_id"] for x in rows])
    b.invert_yaxis()
    ctx = ", ".join(f"{k}={v}" for k, v in summary.context.items())
    import textwrap

    b.set(xlabel="click probability", title="\n".join(textwrap.wrap(f"For one shopper: {ctx}", 70)))
    b.title.set_fontsize(9)
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
