"""The decision-policy contract every policy kind implements.

A policy kind (callouts' :class:`~memberlab.callouts.CalloutRecommender`, layouts'
:class:`~memberlab.layouts.LayoutPolicy`, any later kind) is a :class:`Policy`:

- ``decide(context, *, seed=None, rng=None, ...)`` returns a :class:`DecisionLike`:
  ``decision_id``, ranked ``choices`` (item ids, or one layout), one ``propensities``
  entry per served choice (``None`` when not estimated), ``policy_version`` and
  ``seed``. It never changes the model: features never seen in training are scored from
  their group's prior without being registered, so decisions can run concurrently.
- ``decide(context, seed=d.seed, ...)`` under the same ``policy_version`` replays a
  logged decision exactly. ``rng`` is the source of a seed when ``seed`` is None (see
  :mod:`memberlab.policy._seeds`).
- ``update(feedback)`` learns from a batch (the kind's own feedback records) and bumps
  ``policy_version``.
- ``get_params()`` returns every constructor argument; ``to_bytes``/``from_bytes`` and
  ``save``/``load`` go through the one codec of :mod:`memberlab.policy._codec`.
- ``refit_priors(log, ...)`` refits the empirical-Bayes group priors by the one rule
  :func:`memberlab.bayes.metaprior.empirical_bayes_refit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

__all__ = ["DecisionLike", "Policy"]


@runtime_checkable
class DecisionLike(Protocol):
    """What every kind's decision record carries, under the same names."""

    @property
    def decision_id(self) -> str: ...

    @property
    def policy_version(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def choices(self) -> list[Any]:
        """Served choices, best first (item ids; for layouts one ``{slot: variant}``)."""
        ...

    @property
    def propensities(self) -> list[float | None]:
        """Probability of each served choice under the policy's randomness."""
        ...


@runtime_checkable
class Policy(Protocol):
    """A decision policy (see the module docstring for the promises)."""

    policy_kind: str

    @property
    def policy_version(self) -> int: ...

    def decide(
        self,
        context: Mapping[str, Any],
        *,
        seed: int | None = None,
        rng: Any = None,
    ) -> DecisionLike: ...

    def update(self, feedback: Sequence[Any]) -> None: ...

    def get_params(self) -> dict[str, Any]: ...

    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, data: bytes) -> Self: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...
