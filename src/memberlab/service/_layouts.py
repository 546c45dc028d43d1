"""Layout policies served from versioned snapshots, one per layout space.

The same scheme as the callouts (:mod:`memberlab.service._policy`): a snapshot per
space in the snapshots table (kind ``"layouts"``, space = its name, ``spec`` = the
space's dict), hot-swapped by every process, published under the trainer lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from memberlab._errors import SpaceConflictError, UnknownItemError
from memberlab.layouts import LayoutPolicy, LayoutSpace
from memberlab.service._policy import lease
from memberlab.service.settings import Settings
from memberlab.store import Store

__all__ = ["LAYOUTS", "LayoutsHolder", "SpaceConflictError"]

LAYOUTS = "layouts"
T = TypeVar("T")


class LayoutsHolder:
    """Per-space serving policies of this process, refreshed from the snapshots table."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.lock = threading.Lock()
        self._policies: dict[str, tuple[LayoutPolicy, int, float]] = {}

    def load_latest(self, space: str) -> tuple[LayoutPolicy, int, Any]:
        snap = self.store.load_snapshot(LAYOUTS, space)
        if snap is None:
            raise UnknownItemError(f"layout space {space!r} does not exist; PUT it first.")
        return LayoutPolicy.from_bytes(snap.data), snap.version, snap.spec

    def current(self, space: str, *, force: bool = False) -> tuple[LayoutPolicy, int]:
        now = time.monotonic()
        hit = self._policies.get(space)
        if hit is not None and not force and now - hit[2] < self.settings.snapshot_poll_interval:
            return hit[0], hit[1]
        latest = self.store.latest_version(LAYOUTS, space)
        if latest == 0:
            raise UnknownItemError(f"layout space {space!r} does not exist; PUT it first.")
        if hit is None or latest != hit[1]:
            policy, version, _ = self.load_latest(space)
        else:
            policy, version = hit[0], hit[1]
        with self.lock:
            if len(self._policies) > 1000:
                self._policies.clear()
            self._policies[space] = (policy, version, now)
        return policy, version

    def define(self, space: str, spec: dict[str, Any]) -> tuple[int, bool]:
        """Create a space (version 1); an identical definition is a no-op.

        Returns the version and whether it was created. A different definition of an
        existing space raises :class:`SpaceConflictError` (its model would not fit).
        """
        normal = LayoutSpace.from_dict(spec).to_dict()
        with lease(self.store, self.settings, wait=10.0):
            snap = self.store.load_snapshot(LAYOUTS, space)
            if snap is not None:
                if snap.spec != normal:
                    raise SpaceConflictError(
                        f"layout space {space!r} exists with a different definition: {snap.spec}."
                    )
                return snap.version, False
            policy = LayoutPolicy(normal, propensity_draws=min(self.settings.propensity_draws, 64))
            version = self.store.publish(
                LAYOUTS, policy.to_bytes(), base_version=0, space=space, spec=normal, reason="init"
            )
        return version, True

    def spec(self, space: str) -> Any:
        snap = self.store.load_snapshot(LAYOUTS, space)
        if snap is None:
            raise UnknownItemError(f"layout space {space!r} does not exist; PUT it first.")
        return snap.spec

    def call(self, space: str, fn: Callable[[LayoutPolicy], T]) -> tuple[T, int]:
        policy, version = self.current(space)
        return fn(policy), version
