"""Feature groups: which weights share an empirical-Bayes prior.

A :class:`FeatureIndex` hands out a stable integer index for each (group, value) pair as
values first appear, so new items and new attribute values can join a live model. It is
the one mutable object in :mod:`memberlab.bayes`; posteriors stay immutable records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from memberlab._errors import DataValidationError, UnknownItemError
from memberlab._typing import IntArray

__all__ = ["FeatureIndex", "GroupPrior"]


@dataclass(frozen=True, slots=True)
class GroupPrior:
    """Prior N(mean, var) shared by every weight of one feature group."""

    mean: float = 0.0
    var: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.mean):
            raise DataValidationError(f"mean == {self.mean}, must be finite.")
        if not (self.var > 0 and np.isfinite(self.var)):
            raise DataValidationError(f"var == {self.var}, must be positive and finite.")


@dataclass(slots=True)
class FeatureIndex:
    """Registry of features ``(group, value) -> index`` with the group of each index.

    >>> fi = FeatureIndex()
    >>> fi.index("brand", "acme"), fi.index("colour", "red"), fi.index("brand", "acme")
    (0, 1, 0)
    >>> fi.groups, fi.group_ids().tolist()
    (['brand', 'colour'], [0, 1])
    """

    _by_key: dict[tuple[str, str], int] = field(default_factory=dict)
    _keys: list[tuple[str, str]] = field(default_factory=list)
    _group_of: list[int] = field(default_factory=list)
    _group_ids: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def groups(self) -> list[str]:
        return list(self._group_ids)

    def index(self, group: str, value: str, *, create: bool = True) -> int:
        """Index of a feature, registering it if new (unless ``create=False``)."""
        key = (group, value)
        idx = self._by_key.get(key)
        if idx is not None:
            return idx
        if not create:
            raise UnknownItemError(f"feature {group}={value!r} is not registered.")
        idx = len(self._keys)
        self._by_key[key] = idx
        self._keys.append(key)
        gid = self._group_ids.setdefault(group, len(self._group_ids))
        self._group_of.append(gid)
        return idx

    def get(self, group: str, value: str) -> int | None:
        return self._by_key.get((group, value))

    def key(self, idx: int) -> tuple[str, str]:
        return self._keys[idx]

    def keys(self) -> list[tuple[str, str]]:
        return list(self._keys)

    def group_ids(self) -> IntArray:
        """Group id of each feature, shape (n_features,)."""
        return np.asarray(self._group_of, dtype=np.int64)

    def group_of(self, idx: int) -> str:
        return self._keys[idx][0]

    @classmethod
    def from_keys(cls, keys: Iterable[tuple[str, str]]) -> FeatureIndex:
        fi = cls()
        for g, v in keys:
            fi.index(g, v)
        return fi
