"""Drive a real decision service with the value world's shoppers.

:class:`ServiceWorldPolicy` is a :class:`memberlab.value.WorldPolicy`: the one harness
(:func:`memberlab.evaluation.harness.run`, through :func:`memberlab.value.run_value_world`)
runs it like any library policy, but every
decision is a ``POST /v1/callouts/decisions`` to a running ``memberlab serve`` and every
outcome a click and a conversion (naming its plan) sent to ``POST /v1/events``, with
client timestamps so attribution windows close on the stream's own clock. The service
learns through its own trainer (delayed feedback), so the shopper stream is the same as
for library policies while the decisions' seeds are the service's own.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from memberlab.evaluation.regret import RegretTrace
from memberlab.service.launch import running_server
from memberlab.store import Store
from memberlab.value import OraclePolicy, RandomPolicy, ValueWorld, run_value_world

__all__ = [
    "ObjectiveRun",
    "ServiceWorldPolicy",
    "create_keys",
    "load_world_items",
    "run_objectives",
]


def _iso(t: float) -> str:
    whole = int(t)
    ms = min(999, round((t - whole) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def load_world_items(client: httpx.Client, world: ValueWorld) -> None:
    """PUT the world's callouts (their ``pitch`` and ``benefit``) with an admin client."""
    for item in world.items:
        r = client.put(
            f"/v1/callouts/items/{item}", json={"attributes": world.catalog.attributes(item)}
        )
        r.raise_for_status()


class ServiceWorldPolicy:
    """A running service as a world policy.

    Parameters
    ----------
    client : httpx.Client
        A client of the service with a ``decide`` (or ``admin``) key.
    world : ValueWorld
    t0 : float
        Client time of the first decision (epoch seconds).
    dt : float
        Client seconds between decisions; an impression's click follows it by ``dt / 4``
        and its conversion by ``dt / 2``.
    """

    def __init__(
        self, client: httpx.Client, world: ValueWorld, *, t0: float = 1.7e9, dt: float = 1.0
    ) -> None:
        self.client = client
        self.world = world
        self.t0 = t0
        self.dt = dt
        self.n = 0
        self._served: collections.deque[tuple[str, str, float]] = collections.deque()
        self.scores: list[float] = []

    def choose(self, context: Mapping[str, Any], state: int, seed: int) -> int:
        t = self.t0 + self.n * self.dt
        self.n += 1
        r = self.client.post(
            "/v1/callouts/decisions", json={"context": dict(context), "timestamp": _iso(t)}
        )
        r.raise_for_status()
        body = r.json()
        item = body["items"][0]
        self._served.append((body["decision_id"], item["item_id"], t))
        self.scores.append(float(item["score"]))
        return self.world.items.index(item["item_id"])

    def learn(self, feedback: Sequence[tuple[Mapping[str, Any], int, bool, str | None]]) -> None:
        events: list[dict[str, Any]] = []
        for _ctx, j, clicked, plan in feedback:
            did, item, t = self._served.popleft()
            assert item == self.world.items[j], (item, j)
            if clicked:
                events.append(
                    {
                        "event_id": f"{did}-c",
                        "decision_id": did,
                        "item_id": item,
                        "type": "click",
                        "timestamp": _iso(t + self.dt / 4),
                    }
                )
            if plan is not None:
                events.append(
                    {
                        "event_id": f"{did}-v",
                        "decision_id": did,
                        "item_id": item,
                        "type": "conversion",
                        "plan": plan,
                        "timestamp": _iso(t + self.dt / 2),
                    }
                )
        if events:
            self.client.post("/v1/events", json={"events": events}).raise_for_status()


def create_keys(database_url: str) -> tuple[str, str]:
    """An admin and a decide key in the service's database."""
    store = Store(database_url)
    try:
        return store.create_api_key("admin"), store.create_api_key("decide")
    finally:
        store.close()


@dataclass(frozen=True)
class ObjectiveRun:
    """Last-quarter mean true expected value per impression (and click rate) of each
    policy on one shopper stream; ``gap_share`` is ``(x - random) / (oracle - random)``."""

    seed: int
    value: dict[str, float]
    clicks: dict[str, float]
    seconds: dict[str, float]

    def gap_share(self, name: str) -> float:
        lo, hi = self.value["random"], self.value["oracle"]
        return (self.value[name] - lo) / (hi - lo)


def run_objectives(
    world: ValueWorld,
    choice_model: str | Path,
    workdir: str | Path,
    *,
    seed: int,
    n_rounds: int,
    batch: int = 100,
    serve_args: Sequence[str] = (),
    objectives: Sequence[str] = ("clicks", "value"),
    parallel: bool = False,
) -> ObjectiveRun:
    """One stream (``seed``) through a real ``memberlab serve --objective O`` per
    objective (each on a fresh SQLite database in ``workdir``, its trainer process
    running), and through the random and oracle policies in process.

    ``serve_args`` are passed to every server (crosses, attribution window, trainer
    interval, ...); the value server also gets ``--choice-model``. The attribution
    window (client seconds, one per round) must exceed ``batch`` rounds, or events
    arrive after their window closed. ``parallel`` runs the servers at the same time
    (one client thread each), which saves wall time but makes them share the machine.
    """
    value: dict[str, float] = {}
    clicks: dict[str, float] = {}
    secs: dict[str, float] = {}
    for name, pol in (("random", RandomPolicy(world)), ("oracle", OraclePolicy(world))):
        tr = run_value_world(world, pol, n_rounds=n_rounds, batch=batch, rng=seed)
        value[name], clicks[name] = tr.last_quarter()

    def one(objective: str) -> tuple[str, RegretTrace, float]:
        db = Path(workdir) / f"{objective}-{seed}.db"
        url = f"sqlite:///{db}"
        admin, decide = create_keys(url)
        extra = ["--objective", objective, *serve_args]
        if objective == "value":
            extra += ["--choice-model", str(choice_model)]
        log = Path(workdir) / f"{objective}-{seed}.log"
        with running_server(url, *extra, log_path=log) as server:
            with server.client(admin) as a:
                load_world_items(a, world)
            t0 = time.perf_counter()
            with server.client(decide) as c:
                trace = run_value_world(
                    world, ServiceWorldPolicy(c, world), n_rounds=n_rounds, batch=batch, rng=seed
                )
            return objective, trace, time.perf_counter() - t0

    if parallel:  # one client thread per server: the servers are processes of their own
        with ThreadPoolExecutor(max_workers=len(objectives)) as pool:
            done = list(pool.map(one, objectives))
    else:
        done = [one(o) for o in objectives]
    for objective, trace, took in done:
        value[objective], clicks[objective] = trace.last_quarter()
        secs[objective] = took
    return ObjectiveRun(seed, value, clicks, secs)
