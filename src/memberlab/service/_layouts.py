"""Layout policies served from versioned snapshots, one per layout space.

The generic :class:`~memberlab.service._policy.PolicyHolder` with the layouts kind: a
snapshot per space in the snapshots table (kind ``"layouts"``, space = its name,
``spec`` = the space's dict), hot-swapped by every process, published under the trainer
lease. A space must be defined (:meth:`LayoutsHolder.define`) before it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from memberlab._errors import SpaceConflictError, UnknownItemError
from memberlab.layouts import LayoutPolicy, LayoutSpace
from memberlab.service._policy import PolicyHolder, PolicyKind, lease
from memberlab.service.settings import Settings
from memberlab.store import DueImpression, Store

__all__ = ["LAYOUTS", "LAYOUTS_KIND", "LayoutsHolder", "SpaceConflictError"]

LAYOUTS = "layouts"
T = TypeVar("T")


def _layout_feedback(policy: LayoutPolicy, rows: Sequence[DueImpression]) -> list[Any]:
    return [(d.context, d.served, 1 if d.reward > 0 else 0) for d in rows]


LAYOUTS_KIND = PolicyKind(
    name=LAYOUTS, load=LayoutPolicy.from_bytes, new=None, feedback=_layout_feedback
)


class LayoutsHolder(PolicyHolder):
    """Per-space serving policies of this process, refreshed from the snapshots table."""

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store, settings, LAYOUTS_KIND)

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
        """Run ``fn`` on the space's serving policy (no lock: ``decide`` never writes)."""
        return self.run(fn, space)
