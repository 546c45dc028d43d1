"""Serving policies from versioned snapshots, and publishing new ones.

Every server process keeps the newest callout recommender it has loaded and checks the
snapshots table for a newer version at most every ``snapshot_poll_interval`` seconds
(one indexed ``max(version)`` lookup), so a trainer in any process hot-swaps the policy
of every process. Publishing goes through :func:`publish_locked`, which holds the
trainer lease so only one writer builds version n + 1 from version n.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from memberlab._errors import LeaseBusyError, StaleSnapshotError
from memberlab.callouts import CalloutRecommender, Catalog
from memberlab.service.settings import Settings
from memberlab.store import Store

__all__ = ["CalloutsHolder", "LeaseBusyError", "holder_id", "lease"]

log = logging.getLogger(__name__)

KIND = "callouts"
T = TypeVar("T")


def holder_id() -> str:
    """A lease holder id unique to this process and call site."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextmanager
def lease(store: Store, settings: Settings, *, wait: float = 0.0) -> Iterator[str]:
    """Hold the trainer lease for the duration of the block (or raise LeaseBusyError)."""
    me = holder_id()
    deadline = time.monotonic() + wait
    while not store.try_lease(me, ttl=settings.lease_ttl):
        if time.monotonic() >= deadline:
            raise LeaseBusyError("another process holds the trainer lease; try again shortly.")
        time.sleep(0.05)
    try:
        yield me
    finally:
        store.release_lease(me)


def new_recommender(settings: Settings) -> CalloutRecommender:
    return CalloutRecommender(
        catalog=Catalog(),
        crosses=[tuple(c.split(":", 1)) for c in settings.crosses],  # type: ignore[misc]
        n_propensity_draws=settings.propensity_draws,
    )


def sync_catalog(rec: CalloutRecommender, store: Store) -> int:
    """Make the recommender's catalog match the items table; returns items changed."""
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


class CalloutsHolder:
    """The callout policy this process serves from, refreshed from the snapshots table."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.lock = threading.Lock()
        self._rec: CalloutRecommender | None = None
        self._version = 0
        self._checked = 0.0

    @property
    def version(self) -> int:
        return self._version

    def load_latest(self) -> tuple[CalloutRecommender, int]:
        """A fresh copy of the newest snapshot (or a new recommender at version 0)."""
        snap = self.store.load_snapshot(KIND)
        if snap is None:
            return new_recommender(self.settings), 0
        return CalloutRecommender.from_bytes(snap.data), snap.version

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

    def current(self, *, force: bool = False) -> tuple[CalloutRecommender, int]:
        """The serving recommender and its snapshot version, hot-swapped when stale."""
        now = time.monotonic()
        if (
            force
            or self._rec is None
            or now - self._checked >= self.settings.snapshot_poll_interval
        ):
            self._checked = now
            latest = self.store.latest_version(KIND)
            if self._rec is None or latest != self._version:
                rec, version = self.load_latest()
                with self.lock:
                    if self._rec is None or version >= self._version:
                        self._rec, self._version = rec, version
                        log.info("serving callout policy version %d", version)
        assert self._rec is not None
        return self._rec, self._version

    def call(self, fn: Callable[[CalloutRecommender], T]) -> tuple[T, int]:
        """Run ``fn`` on the serving recommender under its lock (it is not thread-safe)."""
        rec, version = self.current()
        with self.lock:
            return fn(rec), version

    def publish_change(
        self,
        change: Callable[[CalloutRecommender], Any],
        *,
        reason: str,
        wait: float = 10.0,
    ) -> tuple[Any, int]:
        """Apply ``change`` to the newest snapshot and publish it as the next version."""
        with lease(self.store, self.settings, wait=wait):
            rec, base = self.load_latest()
            sync_catalog(rec, self.store)
            result = change(rec)
            version = self.store.publish(KIND, rec.to_bytes(), base_version=base, reason=reason)
        self.current(force=True)
        return result, version
