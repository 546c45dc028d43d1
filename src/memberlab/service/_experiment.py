"""The randomised holdout: sticky assignment, the baseline that serves the holdout, and
the readout from the store.

A unit (shopper, member) named by ``unit_id`` is in the holdout when
``sha256(salt + NUL + unit_id)``, read as a number in [0, 1), is below the holdout
fraction: the same unit gets the same arm on every request, in every worker, across
restarts and across kinds (callouts and layouts share the salt, so a held-out shopper is
held out of every surface). The salt is generated once and kept in the store's ``meta``
table (``--experiment-salt`` sets it). A request without a unit id is assigned on its
own, at random, and answered with ``"assignment_unit": "request"``.

The holdout is served by a baseline whose propensities are logged like every decision:
``uniform`` (a uniformly random ordering of k of the n candidates: slot propensity
``1/n``; for layouts, a uniformly random allowed layout: ``1/n_allowed``) or ``first``
(the first k candidates, or the first allowed layout in slot order: propensity 1). Its
random draws come from the decision's logged seed, so a holdout decision replays too.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from memberlab._errors import ConflictError, DataValidationError, UnknownItemError
from memberlab.callouts import CalloutRecommender, Decision
from memberlab.callouts.recommender import ServedItem
from memberlab.layouts import LayoutDecision, LayoutPolicy, LayoutSpace
from memberlab.policy import new_decision_id
from memberlab.service.settings import Settings
from memberlab.store import Store
from memberlab.store._export import kind_hint

__all__ = [
    "READOUT_KINDS",
    "SALT_KEY",
    "Assignment",
    "Experiment",
    "LoggedCandidates",
    "callouts_baseline",
    "candidates_committed",
    "experiment_frame",
    "experiment_report",
    "layouts_baseline",
    "resolve_salt",
    "unit_draw",
]

log = logging.getLogger(__name__)

SALT_KEY = "experiment_salt"
HOLDOUT: Literal["holdout"] = "holdout"
POLICY: Literal["policy"] = "policy"


def unit_draw(salt: str, unit_id: str) -> float:
    """The unit's uniform number in [0, 1): its arm is holdout when this is < fraction."""
    digest = hashlib.sha256(f"{salt}\x00{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def resolve_salt(store: Store, given: str | None = None) -> str:
    """The experiment's salt: ``given`` (stored, replacing any other), else the stored
    one, else a new random one stored now (the first writer wins)."""
    if given:
        old = store.get_meta(SALT_KEY)
        if old != given:
            if old is not None:
                log.warning("experiment salt replaced: units are assigned afresh")
            store.set_meta(SALT_KEY, given)
        return given
    return store.setdefault_meta(SALT_KEY, secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Assignment:
    """A request's arm and how it was assigned."""

    arm: Literal["policy", "holdout"]
    by_unit: bool  # sticky, from the unit id (else per request)
    running: bool  # an experiment runs (else the arm is not logged)

    @property
    def holdout(self) -> bool:
        return self.arm == HOLDOUT

    @property
    def unit(self) -> Literal["unit", "request"]:
        """``"unit"`` or ``"request"``: what the response reports."""
        return "unit" if self.by_unit else "request"

    @property
    def logged(self) -> str | None:
        """What the decisions table stores: the arm, or None when no experiment runs."""
        return self.arm if self.running else None


class Experiment:
    """The holdout configuration of one app: fraction, baseline and salt."""

    def __init__(self, fraction: float = 0.0, policy: str = "uniform", salt: str | None = None):
        if not 0 <= fraction < 1:
            raise DataValidationError(f"holdout_fraction == {fraction}, must be in [0, 1).")
        if policy not in ("uniform", "first"):
            raise DataValidationError(f"holdout_policy == {policy!r}, must be uniform or first.")
        if fraction > 0 and not salt:
            raise DataValidationError("a holdout needs an experiment salt.")
        self.fraction, self.policy, self.salt = fraction, policy, salt

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> Experiment:
        frac = settings.holdout_fraction
        salt = resolve_salt(store, settings.experiment_salt) if frac > 0 else None
        return cls(frac, settings.holdout_policy, salt)

    @property
    def running(self) -> bool:
        return self.fraction > 0

    def assign(self, unit_id: str | None) -> Assignment:
        """The arm of a request naming ``unit_id`` (None: assigned per request)."""
        if not self.running or self.salt is None:
            return Assignment(POLICY, unit_id is not None, False)
        u = secrets.randbits(53) / 2.0**53 if unit_id is None else unit_draw(self.salt, unit_id)
        return Assignment(HOLDOUT if u < self.fraction else POLICY, unit_id is not None, True)

    def describe(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "holdout_fraction": self.fraction,
            "holdout_policy": self.policy,
            "salt_fingerprint": None
            if self.salt is None
            else hashlib.sha256(self.salt.encode()).hexdigest()[:12],
        }


# --------------------------------------------------------------------------- baselines


def _candidates(rec: CalloutRecommender, candidates: Sequence[str] | None) -> list[str]:
    cat = rec.catalog
    if candidates is None:
        return cat.active_ids()
    ids = list(candidates)
    for i in ids:  # the same checks and messages as the recommender's
        if i not in cat:
            raise UnknownItemError(f"candidate item_id == {i!r} is not in the catalog.")
        if not cat.is_active(i):
            raise DataValidationError(f"candidate item_id == {i!r} is retired.")
    if len(set(ids)) != len(ids):
        raise DataValidationError("candidates must not repeat an item_id.")
    return ids


#: A decision without an explicit list logs the full catalogue list once per this many
#: decisions of a catalogue state (and at least once a minute); the others log a
#: reference to it. Repeating it bounds what a lost or filtered-out full copy costs.
FULL_LIST_EVERY = 1000
FULL_LIST_SECONDS = 60.0


@dataclass(slots=True)
class _CatalogList:
    catalog: object  # the catalog object this entry is for (held, compared by identity)
    version: int  # its change counter when the entry was made
    ids: list[str]
    key: str  # content hash of ids
    since_full: int  # decisions since the full list was last logged
    full_at: float  # monotonic time it was last logged
    # whether a decision carrying the full list has committed: until one has, every
    # decision carries it, so no reference is logged to a copy that was never written
    committed: bool = False


_catalog_list: _CatalogList | None = None

#: What a decision logs as its candidates: the list, or a full or referenced catalogue list.
LoggedCandidates = list[str] | dict[str, Any]


def decision_candidates(
    rec: CalloutRecommender, candidates: Sequence[str] | None
) -> LoggedCandidates:
    """What the decisions table logs as the list a callouts decision chose from.

    An explicit request list is logged as it is. Without one the decision chose from the
    serving catalogue's active items, which the export cannot rebuild exactly from the
    items table (the serving snapshot lags it, and the table keeps no history of
    retirements), so it is logged too, but cheaply: ``{"key": K, "ids": [...]}`` on the
    first decision from each catalogue (each serving snapshot, each change) and once per
    :data:`FULL_LIST_EVERY` decisions (or :data:`FULL_LIST_SECONDS`) after, and
    ``{"ref": K}`` otherwise, ``K`` a hash of the list; the active list is rebuilt only
    when the catalogue changes. The export
    resolves references (:mod:`memberlab.store._export`).

    A reference is handed out only once a decision carrying the full list has committed
    (the caller reports it with :func:`candidates_committed`): a decision whose write
    failed, or that was in flight when the process died, leaves no reference behind to
    a copy that is not in the table. Until then every decision logs the list in full.
    """
    global _catalog_list
    if candidates is not None:
        return list(candidates)
    cat = rec.catalog
    cur = _catalog_list
    if cur is None or cur.catalog is not cat or cur.version != cat.version:
        # a changed catalogue or a new snapshot: log the list in full first (a new object
        # may serve another store, as apps built in one process do)
        ids = cat.active_ids()
        key = hashlib.sha256("\x00".join(ids).encode()).hexdigest()[:24]
        cur = _CatalogList(cat, cat.version, ids, key, 0, 0.0)
        _catalog_list = cur
    full = {"key": cur.key, "ids": cur.ids}
    if not cur.committed:
        return full
    cur.since_full += 1
    now = time.monotonic()
    if cur.since_full >= FULL_LIST_EVERY or now - cur.full_at >= FULL_LIST_SECONDS:
        cur.since_full, cur.full_at = 0, now
        return full
    return {"ref": cur.key}


def candidates_committed(logged: LoggedCandidates) -> None:
    """Record that a decision logging ``logged`` (from :func:`decision_candidates`) has
    committed: once a full catalogue list has, later decisions may refer to it."""
    cur = _catalog_list
    if cur is None or cur.committed or not isinstance(logged, dict) or "ids" not in logged:
        return
    if logged.get("key") == cur.key:
        cur.committed, cur.since_full, cur.full_at = True, 0, time.monotonic()


def callouts_baseline(
    rec: CalloutRecommender,
    candidates: Sequence[str] | None,
    k: int,
    seed: int,
    how: str,
) -> Decision:
    """The holdout's decision: ``uniform`` (slot propensity 1/n) or ``first`` (1)."""
    ids = _candidates(rec, candidates)
    n = len(ids)
    if not 1 <= k <= n:
        raise DataValidationError(
            f"k == {k!r}, must be an integer in [1, {n}] (the number of candidates)."
        )
    if how == "first":
        chosen, p, p_set = ids[:k], 1.0, 1.0
    else:
        picks = np.random.default_rng(seed).choice(n, size=k, replace=False)
        chosen, p, p_set = [ids[int(j)] for j in picks], 1.0 / n, k / n
    items = [ServedItem(i, math.nan, p, p_set) for i in chosen]  # no score: not sampled
    # the route logs the snapshot version it served from, as for the policy's decisions
    return Decision(new_decision_id(), items, 0, seed)


@lru_cache(maxsize=64)
def allowed_layouts(space: LayoutSpace) -> int:
    """How many layouts of ``space`` the constraints allow (exact).

    Inclusion-exclusion over the constraints (a set of constraints is matched by the
    layouts that agree with all of them: none if two name different variants of a slot,
    else the product of the other slots' sizes); by enumeration beyond 20 constraints.
    """
    sizes = [int(x) for x in space.sizes]
    cons = space.constraint_array
    if cons.shape[0] == 0:
        return math.prod(sizes)
    if cons.shape[0] <= 20:
        total = 0
        for r in range(cons.shape[0] + 1):
            for subset in itertools.combinations(range(cons.shape[0]), r):
                fixed: dict[int, int] = {}
                ok = True
                for c in subset:
                    for d in np.flatnonzero(cons[c] >= 0).tolist():
                        v = int(cons[c, d])
                        if fixed.setdefault(d, v) != v:
                            ok = False
                            break
                    if not ok:
                        break
                if ok:
                    free = math.prod(s for d, s in enumerate(sizes) if d not in fixed)
                    total += (-1) ** r * free
        return total
    n = space.n_layouts
    if n > 5_000_000:
        raise ConflictError(
            f"the uniform holdout cannot count the allowed layouts of a space with "
            f"{cons.shape[0]} constraints and {n} layouts; use --holdout-policy first."
        )
    allowed = 0
    for start in range(0, n, 200_000):
        codes = np.arange(start, min(n, start + 200_000))
        rows = np.stack(np.unravel_index(codes, sizes), axis=1).astype(np.int64)
        allowed += int((~space.violations(rows)).sum())
    return allowed


def _first_layout(space: LayoutSpace) -> np.ndarray:
    sizes = [int(x) for x in space.sizes]
    n = space.n_layouts
    for start in range(0, n, 4096):
        codes = np.arange(start, min(n, start + 4096))
        rows = np.stack(np.unravel_index(codes, sizes), axis=1).astype(np.int64)
        ok = np.flatnonzero(~space.violations(rows))
        if ok.size:
            return np.asarray(rows[int(ok[0])])
    raise ConflictError("no layout of the space is allowed.")  # the space refuses this


def layouts_baseline(policy: LayoutPolicy, seed: int, how: str) -> LayoutDecision:
    """The holdout's layout: uniform over the allowed layouts, or the first allowed one
    (every slot's first variant when that is allowed)."""
    space = policy.space
    if how == "first":
        row, p = _first_layout(space), 1.0
    else:
        rng = np.random.default_rng(seed)
        sizes = space.sizes
        for _ in range(10_000):  # rejection: uniform over the allowed layouts
            row = rng.integers(0, sizes)
            if not space.violations(row[None, :])[0]:
                break
        else:
            raise ConflictError("the uniform holdout found no allowed layout in 10,000 draws.")
        p = 1.0 / allowed_layouts(space)
    return LayoutDecision(
        decision_id=new_decision_id(),
        layout=space.from_indices(row),
        propensity=p,
        policy_version=policy.version_,
        seed=seed,
    )


# --------------------------------------------------------------------------- readout


#: the kinds a readout reads: ``value`` is the callouts of ``serve --objective value``
READOUT_KINDS = ("callouts", "layouts", "value")


def _check_kind(kind: str) -> None:
    if kind not in READOUT_KINDS:
        raise DataValidationError(f"kind == {kind!r}, must be one of {READOUT_KINDS}.")


def experiment_frame(
    store: Store,
    kind: str = "callouts",
    *,
    space: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> tuple[Any, int]:
    """The store's closed decisions with an arm as one frame (``decision_id, ts, unit_id,
    assignment, reward``) and the number still pending; every decision in memory, for
    inspection (:func:`experiment_report` streams instead)."""
    import pandas as pd

    _check_kind(kind)
    d = store.experiment_decisions(kind, space=space, since=since, until=until)
    frame = pd.DataFrame(
        {
            "decision_id": d.decision_id,
            "ts": np.asarray(d.ts, dtype=np.float64),
            "unit_id": pd.Series(d.unit_id, dtype=object),
            "assignment": d.assignment,
            "reward": np.asarray(d.reward, dtype=np.float64),
        }
    )
    closed = np.asarray(d.closed, dtype=bool)
    return frame[closed].reset_index(drop=True), int((~closed).sum())


def experiment_report(
    store: Store,
    kind: str = "callouts",
    *,
    space: str | None = None,
    since: float | None = None,
    until: float | None = None,
    holdout_fraction: float | None = None,
    level: float = 0.95,
    cs_tuning_units: float = 10_000.0,
    every: float | None = None,
    covariates: Any = None,
    batch_size: int = 10_000,
) -> dict[str, Any]:
    """:func:`memberlab.evaluation.experiment.holdout_report` on the store's decisions.

    The decisions stream from one query in batches of ``batch_size`` into per-unit
    sums (:class:`memberlab.evaluation.experiment.UnitSums`), so memory grows with the
    units, not the decisions; the same numbers as the readout of the frame of
    :func:`experiment_frame`."""
    from memberlab.evaluation.experiment import Batch, holdout_report_batches

    _check_kind(kind)
    where: dict[str, Any] = {"space": space, "since": since, "until": until}
    pending = 0

    def closed_batches() -> Iterator[Batch]:
        nonlocal pending
        for b in store.iter_experiment_decisions(kind, batch_size=batch_size, **where):
            keep = [j for j, c in enumerate(b.closed) if c]
            pending += len(b.closed) - len(keep)
            yield (
                [b.unit_id[j] for j in keep],
                [b.assignment[j] for j in keep],
                [b.reward[j] for j in keep],
                [b.ts[j] for j in keep],
            )

    out = holdout_report_batches(
        closed_batches(),
        time_range=store.experiment_time_range(kind, **where),
        covariates=covariates,
        holdout_fraction=holdout_fraction,
        level=level,
        cs_tuning_units=cs_tuning_units,
        every=every,
    )
    out["decisions_pending"] = pending
    if not out["ready"] and pending == 0 and not _decided(out):
        # nothing of this kind: say where the callouts are rather than answer empty
        hint = kind_hint(store, kind, with_arm=True, **where)
        if hint is not None:
            out["reason"] = hint
    return out


def _decided(out: dict[str, Any]) -> int:
    """The closed decisions a readout counted (in either arm)."""
    return sum(int(a.get("decisions", 0)) for a in out.get("arms", {}).values())
