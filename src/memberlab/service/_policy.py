"""Serving policies from versioned snapshots, and publishing new ones: one holder for
every policy kind.

Every server process keeps the newest snapshot it has loaded of each (kind, space) and
checks the snapshots table for a newer version at most every
``snapshot_poll_interval`` seconds (one indexed ``max(version)`` lookup), so a trainer
in any process hot-swaps the policy of every process. Publishing goes through
:meth:`PolicyHolder.publish_change`, which holds the trainer lease so only one writer
builds version n + 1 from version n.

A kind is described once by a :class:`PolicyKind` (its snapshot class, how to build a
new policy from the settings, how to turn closed impressions into feedback, how to sync
with the items table); :class:`PolicyHolder` and the trainer
(:mod:`memberlab.service._trainer`) are written once for every kind. Decisions take no
lock: policies never change their model in ``decide`` (the :mod:`memberlab.policy`
contract), and a new version is swapped in as a new object.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from memberlab._errors import (
    LeaseBusyError,
    StaleSnapshotError,
    UnknownItemError,
)
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.service.settings import Settings
from memberlab.store import DueImpression, Store

__all__ = [
    "CALLOUTS_KIND",
    "KIND",
    "CalloutsHolder",
    "LeaseBusyError",
    "PolicyHolder",
    "PolicyKind",
    "holder_id",
    "lease",
    "new_recommender",
    "serving_holder",
    "settings_crosses",
    "sync_catalog",
]

log = logging.getLogger(__name__)

KIND = "callouts"
T = TypeVar("T")


def holder_id() -> str:
    """A lease holder id unique to this process and call site."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_here(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the calling thread (how :func:`lease` and the trainer run their write
    transactions unless told otherwise)."""
    return fn()


@contextmanager
def lease(
    store: Store,
    settings: Settings,
    *,
    wait: float = 0.0,
    writes: Callable[[Callable[[], Any]], Any] = run_here,
) -> Iterator[str]:
    """Hold the trainer lease for the duration of the block (or raise LeaseBusyError).

    ``writes`` runs each of the lease's write transactions (the trainer process runs
    them on a thread of normal CPU priority)."""
    me = holder_id()
    deadline = time.monotonic() + wait
    while not writes(lambda: store.try_lease(me, ttl=settings.lease_ttl)):
        if time.monotonic() >= deadline:
            raise LeaseBusyError("another process holds the trainer lease; try again shortly.")
        time.sleep(0.05)
    try:
        yield me
    finally:
        writes(lambda: store.release_lease(me))


# --------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class PolicyKind:
    """How the service handles one policy kind.

    Attributes
    ----------
    name : str
        The kind's name in the snapshots and decisions tables.
    load : callable (bytes) -> policy
        The kind's ``from_bytes``.
    new : callable (Settings, spec) -> policy, optional
        A fresh policy (version 0) for a space; None when a space must be defined first.
    feedback : callable (policy, rows) -> list
        The kind's feedback records for the impressions the trainer closes.
    sync : callable (policy, Store) -> int, optional
        Bring the policy in line with the items table; returns the changes.
    conversions : bool
        The feedback reads clicks and conversion plans apart (the value objective:
        ``Store.due_impressions(conversions=True)``).
    clicks : callable (policy) -> CalloutRecommender, optional
        The policy's click model, for a kind that serves callout decisions (what the
        items, rates and stats routes read).
    """

    name: str
    load: Callable[[bytes], Any]
    new: Callable[[Settings, Any], Any] | None
    feedback: Callable[[Any, Sequence[DueImpression]], list[Any]]
    sync: Callable[[Any, Store], int] | None = None
    conversions: bool = False
    clicks: Callable[[Any], CalloutRecommender] | None = None


def settings_crosses(settings: Settings) -> list[tuple[str, str]] | None:
    """The recommender's ``crosses`` from the settings: none configured means ``None``,
    every context key crossed with every item attribute (the personalising default)."""
    pairs = [tuple(c.split(":", 1)) for c in settings.crosses]
    return [(a, b) for a, b in pairs] or None


def new_recommender(settings: Settings, spec: Any = None) -> CalloutRecommender:
    """A fresh callout recommender (version 0) from the settings."""
    return CalloutRecommender(
        catalog=Catalog(),
        crosses=settings_crosses(settings),
        propensity_draws=settings.propensity_draws,
        exploration=settings.exploration,
    )


class _HasCatalog(Protocol):
    @property
    def catalog(self) -> Catalog: ...


def sync_catalog(rec: _HasCatalog, store: Store) -> int:
    """Make the recommender's catalog match the items table; returns items changed (any
    kind serving the callout items: clicks or value)."""
    changed = 0
    cat = rec.catalog
    for item in store.list_items(kind=KIND):
        if item.active:
            if (
                item.item_id not in cat
                or not cat.is_active(item.item_id)
                or cat.attributes(item.item_id) != item.attributes
            ):
                try:
                    cat.add(item.item_id, item.attributes)
                    changed += 1
                except ValueError as exc:  # validated on PUT; never stops the trainer
                    log.warning("item %r cannot be added: %s", item.item_id, exc)
        elif item.item_id in cat and cat.is_active(item.item_id):
            cat.retire(item.item_id)
            changed += 1
    return changed


def _callout_feedback(rec: CalloutRecommender, rows: Sequence[DueImpression]) -> list[Feedback]:
    return [
        Feedback(d.context, d.item_id, d.reward, d.decision_id)
        for d in rows
        if d.item_id in rec.catalog
    ]


def _itself(rec: CalloutRecommender) -> CalloutRecommender:
    return rec


CALLOUTS_KIND = PolicyKind(
    name=KIND,
    load=CalloutRecommender.from_bytes,
    new=new_recommender,
    feedback=_callout_feedback,
    sync=sync_catalog,
    clicks=_itself,
)


# --------------------------------------------------------------------------- holder


#: a process that polled less than this long after its poll interval ran out is busy
#: serving (see :meth:`PolicyHolder.current`)
_BUSY = 0.1


class PolicyHolder:
    """The policies of one kind this process serves from, one per space (``""`` for a
    kind with a single policy), refreshed from the snapshots table."""

    def __init__(self, store: Store, settings: Settings, kind: PolicyKind) -> None:
        self.store = store
        self.settings = settings
        self.kind = kind
        self.lock = threading.Lock()  # guards the swap, never a decision
        self._policies: dict[str, tuple[Any, int, float]] = {}
        self._loading: set[str] = set()  # spaces being loaded in the background

    def version_of(self, space: str = "") -> int:
        """The version this process serves for ``space`` (0 before the first load)."""
        hit = self._policies.get(space)
        return 0 if hit is None else hit[1]

    def load_latest(self, space: str = "") -> tuple[Any, int, Any]:
        """A fresh copy of the newest snapshot: ``(policy, version, spec)``; a kind with
        a ``new`` factory gets a new policy at version 0 when there is none."""
        snap = self.store.load_snapshot(self.kind.name, space)
        if snap is None:
            if self.kind.new is None:
                raise UnknownItemError(
                    f"{self.kind.name} space {space!r} does not exist; PUT it first."
                )
            return self.kind.new(self.settings, None), 0, None
        return self.kind.load(snap.data), snap.version, snap.spec

    def current(self, space: str = "", *, force: bool = False) -> tuple[Any, int]:
        """The serving policy and its snapshot version, hot-swapped when stale.

        A busy process (one that polled about a poll interval ago) loads a newer version
        on a thread of its own and goes on serving the one it has: decoding a snapshot
        takes milliseconds that every request queued behind it on the event loop would
        wait. An idle process (no poll for longer: nothing is queued) loads it on the
        spot, so a process picks up a version published more than a poll interval ago
        before it answers; so do the first load, ``force=True`` and a retired space."""
        now = time.monotonic()
        hit = self._policies.get(space)
        poll = self.settings.snapshot_poll_interval
        if hit is not None and not force and now - hit[2] < poll:
            return hit[0], hit[1]
        latest = self.store.latest_version(self.kind.name, space)
        if latest == 0 and self.kind.new is None:
            raise UnknownItemError(
                f"{self.kind.name} space {space!r} does not exist; PUT it first."
            )
        if hit is not None and latest == hit[1]:
            policy, version = hit[0], hit[1]
        elif hit is not None and not force and latest > hit[1] and now - hit[2] < poll + _BUSY:
            self._load_in_background(space)
            policy, version = hit[0], hit[1]
        else:
            policy, version = self._load(space, hit)
        self._keep(space, policy, version, now)
        return policy, version

    def _load(self, space: str, hit: tuple[Any, int, float] | None) -> tuple[Any, int]:
        policy, version, _ = self.load_latest(space)
        if hit is not None and version < hit[1]:
            return hit[0], hit[1]
        log.info("serving %s %r version %d", self.kind.name, space, version)
        return policy, version

    def _keep(self, space: str, policy: Any, version: int, now: float) -> None:
        with self.lock:
            old = self._policies.get(space)
            if old is not None and old[1] > version:  # a background load got there first
                policy, version = old[0], old[1]
            if len(self._policies) > 1000:
                self._policies.clear()
            self._policies[space] = (policy, version, now)

    def _load_in_background(self, space: str) -> None:
        """Load the newest snapshot of ``space`` on a daemon thread (one at a time per
        space) and swap it in; a failure is logged and the next poll tries again."""
        with self.lock:
            if space in self._loading:
                return
            self._loading.add(space)

        def load() -> None:
            try:
                policy, version = self._load(space, self._policies.get(space))
                self._keep(space, policy, version, time.monotonic())
            except Exception:
                log.warning(
                    "loading %s %r failed; the next poll retries",
                    self.kind.name,
                    space,
                    exc_info=True,
                )
            finally:
                with self.lock:
                    self._loading.discard(space)

        threading.Thread(target=load, name=f"memberlab-load-{self.kind.name}", daemon=True).start()

    def run(self, fn: Callable[[Any], T], space: str = "") -> tuple[T, int]:
        """Run ``fn`` on the serving policy (no lock: ``decide`` never writes)."""
        policy, version = self.current(space)
        return fn(policy), version

    def run_clicks(self, fn: Callable[[CalloutRecommender], T], space: str = "") -> tuple[T, int]:
        """Run ``fn`` on the serving policy's click model (a kind serving callouts)."""
        clicks = self.kind.clicks
        if clicks is None:
            raise TypeError(f"kind {self.kind.name!r} has no click model.")
        policy, version = self.current(space)
        return fn(clicks(policy)), version

    def publish_change(
        self,
        change: Callable[[Any], Any],
        *,
        reason: str,
        space: str = "",
        wait: float = 10.0,
    ) -> tuple[Any, int]:
        """Apply ``change`` to the newest snapshot and publish it as the next version."""
        with lease(self.store, self.settings, wait=wait):
            policy, base, spec = self.load_latest(space)
            if self.kind.sync is not None:
                self.kind.sync(policy, self.store)
            result = change(policy)
            version = self.store.publish(
                self.kind.name,
                policy.to_bytes(),
                base_version=base,
                space=space,
                spec=spec,
                reason=reason,
            )
        self.current(space, force=True)
        return result, version


def serving_holder(callouts: PolicyHolder, value: PolicyHolder | None) -> PolicyHolder:
    """The holder that serves callout decisions, logs them under its kind and learns
    from their feedback: the value policy when the service runs the value objective,
    else the clicks policy (the one rule; :attr:`memberlab.service.deps.Services.served`
    and the trainer read it)."""
    return callouts if value is None else value


class CalloutsHolder(PolicyHolder):
    """The callout recommender this process serves from (the ``""`` space of kind
    ``"callouts"``)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store, settings, CALLOUTS_KIND)

    @property
    def version(self) -> int:
        return self.version_of("")

    def call(self, fn: Callable[[CalloutRecommender], T]) -> tuple[T, int]:
        """Run ``fn`` on the serving recommender (no lock: ``decide`` never writes)."""
        return self.run(fn)

    def ensure_initial(self) -> None:
        """Publish version 1 (empty or from the items table) if there is no snapshot."""
        if self.store.latest_version(KIND) > 0:
            return
        try:
            with lease(self.store, self.settings, wait=10.0):
                if self.store.latest_version(KIND) == 0:
                    rec = new_recommender(self.settings)
                    sync_catalog(rec, self.store)
                    self.store.publish(KIND, rec.to_bytes(), base_version=0, reason="init")
        except (StaleSnapshotError, LeaseBusyError):
            pass
