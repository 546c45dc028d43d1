"""A callout world with ground truth, as a :class:`memberlab.evaluation.harness.World`.

Items carry attributes (benefit, brand, colour, price, title) whose true effects are
drawn per feature group from ``N(0, group_var)``; each item also has an idiosyncratic
effect; shoppers' context (member, page, device) shifts the click rate and interacts with
the item's benefit (``page x benefit``, ``member x benefit``). The click probability is
``Phi(latent)`` with a bias set so the average rate sits at ``base_rate`` (2-5%).

Cold start: ``n_active`` items are live at any time; each lives ``item_lifetime`` rounds
(staggered), so new items arrive and old ones retire throughout the run. Clicks arrive
after an exponential delay and only count inside the attribution window; feedback is
applied in batches when windows close. Optional drift moves every true effect by a
random walk step every ``drift_every`` rounds.

:func:`memberlab.evaluation.harness.run` (or :func:`run_policy`, which fills in the
world's length) runs any :class:`SimPolicy` on it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
from memberlab.callouts.catalog import AttributeSpec, Catalog
from memberlab.evaluation.harness import Outcome, run
from memberlab.evaluation.regret import RegretTrace

__all__ = [
    "BENEFITS",
    "DEFAULT_GROUP_VARS",
    "CalloutWorld",
    "RegretTrace",
    "SimPolicy",
    "run_policy",
]

logger = logging.getLogger(__name__)

BENEFITS = ("delivery", "video", "music", "reading", "photos", "grocery", "deals")
PAGES = (*BENEFITS, "home")
DEVICES = ("mobile", "desktop", "app")
COLOURS = ("blue", "orange", "green", "black", "white", "red")
VOCAB = (
    "free", "fast", "unlimited", "exclusive", "new", "save", "stream", "listen", "read",
    "enjoy", "today", "now", "members", "prime", "day", "week", "offer", "deal", "more",
    "best", "top", "easy", "family", "share", "watch", "photo", "storage", "fresh",
    "shipping", "trial",
)  # fmt: skip

#: True variances of the effects of each feature group (probit scale).
DEFAULT_GROUP_VARS: dict[str, float] = {
    "benefit": 0.04,
    "brand": 0.02,
    "colour": 0.005,
    "price": 0.01,
    "title": 0.002,
    "item": 0.02,
    "page x benefit": 0.08,
    "member x benefit": 0.02,
    "context": 0.01,
}


@dataclass(frozen=True, slots=True)
class _Item:
    item_id: str
    born: int
    dies: int
    attributes: dict[str, Any]


class CalloutWorld:
    """Ground truth for callout experiments.

    Parameters
    ----------
    n_rounds : int
        Length of the run the item schedule covers.
    n_active : int
        Items live at any time.
    item_lifetime : int
        Rounds an item stays live (``>= n_rounds`` for a fixed catalog).
    n_brands : int
        Distinct brands.
    group_vars : mapping of str to float, optional
        True effect variances (see ``DEFAULT_GROUP_VARS``).
    base_rate : float
        Average click rate, in (0, 0.5).
    mean_delay, window : float
        Mean click delay and attribution window, in rounds.
    drift_sd, drift_every : float, int
        Random-walk step of every true effect every ``drift_every`` rounds (0: no drift).
    rng : int, Generator or None
    """

    def __init__(
        self,
        *,
        n_rounds: int,
        n_active: int = 50,
        item_lifetime: int = 10_000,
        n_brands: int = 20,
        group_vars: Mapping[str, float] | None = None,
        base_rate: float = 0.03,
        mean_delay: float = 50.0,
        window: float = 500.0,
        drift_sd: float = 0.0,
        drift_every: int = 10_000,
        rng: RNGLike = None,
    ) -> None:
        if n_rounds < 1:
            raise DataValidationError(f"n_rounds == {n_rounds}, must be >= 1.")
        if n_active < 2:
            raise DataValidationError(f"n_active == {n_active}, must be >= 2.")
        if item_lifetime < 1:
            raise DataValidationError(f"item_lifetime == {item_lifetime}, must be >= 1.")
        if not 0 < base_rate < 0.5:
            raise DataValidationError(f"base_rate == {base_rate}, must be in (0, 0.5).")
        if not (mean_delay >= 0 and window > 0):
            raise DataValidationError(
                f"mean_delay == {mean_delay}, window == {window}; need delay >= 0, window > 0."
            )
        if drift_sd < 0 or drift_every < 1:
            raise DataValidationError(
                f"drift_sd == {drift_sd}, drift_every == {drift_every}; need >= 0 and >= 1."
            )
        self.n_rounds = n_rounds
        self.n_active = n_active
        self.item_lifetime = item_lifetime
        self.n_brands = n_brands
        self.group_vars = {**DEFAULT_GROUP_VARS, **(group_vars or {})}
        self.base_rate = base_rate
        self.mean_delay = mean_delay
        self.window = window
        self.drift_sd = drift_sd
        self.drift_every = drift_every
        rng_ = as_generator(rng)
        self._rng = rng_
        gv = self.group_vars

        def eff(group: str, n: int) -> FloatArray:
            return rng_.normal(0.0, math.sqrt(gv[group]), n)

        self.brands = [f"brand{j:02d}" for j in range(n_brands)]
        self._eff = {
            "benefit": eff("benefit", len(BENEFITS)),
            "brand": eff("brand", n_brands),
            "colour": eff("colour", len(COLOURS)),
            "price": eff("price", 4),
            "title": eff("title", len(VOCAB)),
            "page x benefit": eff("page x benefit", len(PAGES) * len(BENEFITS)).reshape(
                len(PAGES), len(BENEFITS)
            ),
            "member x benefit": eff("member x benefit", 2 * len(BENEFITS)).reshape(
                2, len(BENEFITS)
            ),
            "member": eff("context", 2),
            "page": eff("context", len(PAGES)),
            "device": eff("context", len(DEVICES)),
        }
        # items: n_active initial ones with staggered deaths, then one replacement per death
        items: list[_Item] = []
        for j in range(n_active):
            dies = int(item_lifetime * (j + 1) / n_active)
            items.append(self._new_item(len(items), 0, dies))
        queue = sorted(it.dies for it in items)
        while queue and queue[0] < n_rounds:
            t = queue.pop(0)
            it = self._new_item(len(items), t, t + item_lifetime)
            items.append(it)
            queue.append(it.dies)
            queue.sort()
        self.items = items
        self._item_eff = eff("item", len(items))
        self._ben = np.array([BENEFITS.index(it.attributes["benefit"]) for it in items])
        self.contexts: list[dict[str, Any]] = [
            {"member": m, "page": p, "device": d}
            for m, p, d in itertools.product((False, True), PAGES, DEVICES)
        ]
        self._ctx_mem = np.array([int(c["member"]) for c in self.contexts])
        self._ctx_page = np.array([PAGES.index(c["page"]) for c in self.contexts])
        self._ctx_dev = np.array([DEVICES.index(c["device"]) for c in self.contexts])
        self._bias = 0.0
        lat = self._latent()
        # bias so that the average click rate over contexts and items is base_rate
        self._bias = float(
            _solve_bias(lambda b: float(special.ndtr(lat + b).mean()), self.base_rate)
        )
        self.probs = np.asarray(special.ndtr(lat + self._bias), dtype=np.float64)
        # the truth every run starts from (drift moves it during a run)
        self._truth0 = (dict(self._eff), self._item_eff, self.probs)

    def _new_item(self, j: int, born: int, dies: int) -> _Item:
        r = self._rng
        ben = BENEFITS[int(r.integers(len(BENEFITS)))]
        words = r.choice(len(VOCAB), size=3, replace=False)
        attrs: dict[str, Any] = {
            "benefit": ben,
            "brand": self.brands[int(r.integers(self.n_brands))],
            "colour": COLOURS[int(r.integers(len(COLOURS)))],
            "price": float(np.round(r.lognormal(2.0, 1.0), 2)),
            "title": " ".join(VOCAB[w] for w in words),
        }
        return _Item(f"item{j:05d}", born, dies, attrs)

    def _latent(self) -> FloatArray:
        """Latent score without the bias, shape (n_contexts, n_items)."""
        e = self._eff
        item = np.array(
            [
                e["brand"][self.brands.index(it.attributes["brand"])]
                + e["colour"][COLOURS.index(it.attributes["colour"])]
                + e["price"][_price_bucket(it.attributes["price"])]
                + sum(e["title"][VOCAB.index(w)] for w in it.attributes["title"].split())
                for it in self.items
            ]
        )
        item = item + self._item_eff + e["benefit"][self._ben]
        ctx = e["member"][self._ctx_mem] + e["page"][self._ctx_page] + e["device"][self._ctx_dev]
        cross = e["page x benefit"][self._ctx_page][:, self._ben]
        cross = cross + e["member x benefit"][self._ctx_mem][:, self._ben]
        return np.asarray(ctx[:, None] + item[None, :] + cross, dtype=np.float64)

    # ------------------------------------------------ World (memberlab.evaluation.harness)
    reward_names: tuple[str, ...] = ("clicks",)

    def adapt(self, policy: SimPolicy) -> _SimPolicyRun:
        return _SimPolicyRun(self, policy)

    def start(self, n_rounds: int, rng: np.random.Generator) -> None:
        """The initial truth, a fresh live catalog (``catalog``, which policies are started
        with) and the catalog-change schedule."""
        if n_rounds > self.n_rounds:
            raise DataValidationError(
                f"n_rounds == {n_rounds}, must be <= {self.n_rounds} (the world's schedule)."
            )
        # drift replaces these arrays (never writes into them), so the originals stay intact
        eff, item_eff, probs = self._truth0
        self._eff, self._item_eff, self.probs = dict(eff), item_eff, probs
        self.catalog = Catalog(spec={"price": AttributeSpec("numeric", edges=(2.5, 7.5, 20.0))})
        self._records = self.item_records()
        self._events = self.events()
        self._ev_i = 0
        self._index_of = {it.item_id: j for j, it in enumerate(self.items)}
        self._drift_rng: np.random.Generator | None = None
        self._last_start = 0

    def requests(self, start: int, stop: int, rng: np.random.Generator) -> _Requests:
        """Apply the catalog changes (and drift) due by ``start``; draw the contexts."""
        if self._drift_rng is None:  # seeded after the policy's seed, as it always was
            self._drift_rng = np.random.default_rng(int(rng.integers(2**63)))
        events, records = self._events, self._records
        while self._ev_i < len(events) and events[self._ev_i][0] <= start:
            _, kind, j = events[self._ev_i]
            if kind == "add":
                rec = records[j]
                self.catalog.add(rec["item_id"], {k: v for k, v in rec.items() if k != "item_id"})
            else:
                self.catalog.retire(self.items[j].item_id)
            self._ev_i += 1
        # one drift step at the first batch start on or after each multiple of drift_every
        if self.drift_sd > 0 and start // self.drift_every > self._last_start // self.drift_every:
            self.drift(self._drift_rng)
        self._last_start = start
        active = self.catalog.active_ids()
        aidx = np.array([self._index_of[i] for i in active])
        codes = rng.integers(0, self.n_contexts, stop - start)
        return _Requests(codes, active, aidx, self.probs[codes][:, aidx])

    def expected(self, requests: _Requests, actions: IntArray) -> FloatArray:
        """Click probability of the served item, shape (n, 1)."""
        P = requests.probs
        return np.asarray(P[np.arange(P.shape[0]), actions][:, None])

    def best(self, requests: _Requests) -> FloatArray:
        return np.asarray(requests.probs.max(axis=1))

    def realise(
        self,
        requests: _Requests,
        actions: IntArray,
        expected: FloatArray,
        rng: np.random.Generator,
    ) -> Outcome:
        """Clicks, their delays, and a label per impression when its window closes."""
        m = actions.shape[0]
        click = rng.random(m) < expected[:, 0]
        delay = rng.exponential(self.mean_delay, m) if self.mean_delay > 0 else np.zeros(m)
        label = (click & (delay <= self.window)).astype(np.int64)
        rows = {"context": requests.codes, "item": requests.aidx[actions], "reward": label}
        return Outcome(click.astype(np.float64), rows, delay=self.window)

    def is_optimal(self, action: IntArray) -> bool | None:
        return None  # the best item depends on the context and the live catalog

    def drift(self, rng: np.random.Generator) -> None:
        """Move every true effect one random-walk step (``drift_sd``)."""
        for k, v in self._eff.items():
            self._eff[k] = v + rng.normal(0.0, self.drift_sd, v.shape)
        self._item_eff = self._item_eff + rng.normal(0.0, self.drift_sd, self._item_eff.shape)
        self.probs = np.asarray(special.ndtr(self._latent() + self._bias), dtype=np.float64)

    @property
    def n_contexts(self) -> int:
        return len(self.contexts)

    def item_records(self) -> list[dict[str, Any]]:
        """Every item ever live, as catalog records."""
        return [{"item_id": it.item_id, **it.attributes} for it in self.items]

    def events(self) -> list[tuple[int, str, int]]:
        """Catalog changes ``(round, "add" | "retire", item index)`` in time order."""
        ev = [(it.born, "add", j) for j, it in enumerate(self.items)]
        ev += [(it.dies, "retire", j) for j, it in enumerate(self.items) if it.dies < self.n_rounds]
        ev.sort(key=lambda e: (e[0], e[1] == "add", e[2]))
        return ev


def _price_bucket(p: float) -> int:
    return int(np.searchsorted(np.array([3.0, 7.0, 20.0]), p, side="right"))


def _solve_bias(mean_rate: Callable[[float], float], target: float) -> float:
    lo, hi = -6.0, 3.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if mean_rate(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class SimPolicy(Protocol):
    """A callout policy: what the callouts world needs of it."""

    name: str

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        """Called once with the (live, shared) catalog and the world's contexts."""

    def choose(self, ctx_codes: IntArray, active: list[str]) -> IntArray:
        """Positions in ``active`` of the item served for each request, shape (n,)."""
        ...

    def learn(self, ctx_codes: IntArray, item_ids: list[str], rewards: IntArray, t: int) -> None:
        """Feedback of closed attribution windows, in impression order."""


@dataclass(frozen=True, slots=True)
class _Requests:
    """One batch: context codes, the live items and their true click rates."""

    codes: IntArray  # (n,) indices into CalloutWorld.contexts
    active: list[str]  # live item ids
    aidx: IntArray  # (n_active,) their indices into CalloutWorld.items
    probs: FloatArray  # (n, n_active)


class _SimPolicyRun:
    """A :class:`SimPolicy` as the harness's batch policy."""

    def __init__(self, world: CalloutWorld, policy: SimPolicy) -> None:
        self.world = world
        self.policy = policy
        self.name = policy.name

    def start(self, rng: np.random.Generator) -> None:
        self.policy.start(self.world.catalog, self.world.contexts, int(rng.integers(2**63)))

    def decide(self, requests: _Requests, rng: np.random.Generator) -> IntArray:
        return np.asarray(self.policy.choose(requests.codes, requests.active), dtype=np.int64)

    def update(self, feedback: Mapping[str, Any], t: int) -> None:
        ids = [self.world.items[j].item_id for j in feedback["item"]]
        self.policy.learn(feedback["context"], ids, feedback["reward"], t)


def run_policy(
    world: CalloutWorld,
    policy: SimPolicy,
    *,
    batch_size: int = 500,
    n_checkpoints: int = 50,
    rng: RNGLike = None,
    progress: Callable[[int], None] | None = None,
) -> RegretTrace:
    """Run ``policy`` for ``world.n_rounds`` rounds; return its regret curve.

    Each batch of ``batch_size`` requests is decided with the policy's state at the
    batch start; clicks are drawn from the true rates, delayed, and fed back when their
    attribution windows close. Regret per round is ``max_j p_j - p_served`` (expected).
    ``progress(n_done)`` is called after each batch. The loop is
    :func:`memberlab.evaluation.harness.run`.
    """
    return run(
        world,
        policy,
        world.n_rounds,
        batch=batch_size,
        n_checkpoints=n_checkpoints,
        rng=rng,
        progress=progress,
    )
