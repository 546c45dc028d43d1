"""The space of layouts: slots with variants, interacting slot pairs, constraints, context.

A layout picks one variant per slot. Internally a layout is a row of variant indices
(``int64`` of shape ``(n_slots,)``); the public API speaks in dicts ``{slot: variant}``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._typing import BoolArray, IntArray

__all__ = ["LayoutSpace"]

_SPACE_KEYS = ("slots", "interactions", "constraints", "context")


def _check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataValidationError(f"{where} == {value!r}, must be a non-empty string.")
    return value


class LayoutSpace:
    """Slots with variants, which slot pairs interact, forbidden combinations, context fields.

    Parameters
    ----------
    slots : mapping of str to sequence of str
        Slot name to its variants, in order. Every slot needs at least one variant;
        names must be non-empty and distinct.
    interactions : sequence of (str, str), optional
        Slot pairs with pairwise interaction terms. ``None`` (default) means all pairs;
        ``[]`` means a main-effects-only model.
    constraints : sequence of mapping of str to str, optional
        Forbidden combinations: a layout is forbidden if it matches every
        ``slot: variant`` entry of any constraint. A one-entry constraint bans a variant.
    context : sequence of str, optional
        Names of context fields (e.g. ``"device"``); their values are learned online.

    Examples
    --------
    >>> space = LayoutSpace.from_dict({
    ...     "slots": {"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"]},
    ...     "constraints": [{"headline": "h1", "image": "i3"}],
    ... })
    >>> space.n_layouts, space.n_slots
    (6, 2)
    >>> space.is_allowed({"headline": "h1", "image": "i3"})
    False
    >>> space.decode(space.encode({"headline": "h2", "image": "i3"}))
    {'headline': 'h2', 'image': 'i3'}
    """

    def __init__(
        self,
        slots: Mapping[str, Sequence[str]],
        *,
        interactions: Sequence[Sequence[str]] | None = None,
        constraints: Sequence[Mapping[str, str]] = (),
        context: Sequence[str] = (),
    ) -> None:
        if not isinstance(slots, Mapping) or len(slots) == 0:
            raise DataValidationError(
                f"slots == {slots!r}, must be a non-empty mapping of slot name to variants."
            )
        names: list[str] = []
        variants: list[tuple[str, ...]] = []
        for name, vs in slots.items():
            _check_name(name, "slot name")
            if isinstance(vs, str) or not isinstance(vs, Sequence) or len(vs) == 0:
                raise DataValidationError(
                    f"slots[{name!r}] == {vs!r}, must be a non-empty list of variant names."
                )
            seen: set[str] = set()
            for v in vs:
                _check_name(v, f"a variant of slots[{name!r}]")
                if v in seen:
                    raise DataValidationError(
                        f"slots[{name!r}] lists variant {v!r} twice; variants must be distinct."
                    )
                seen.add(v)
            names.append(name)
            variants.append(tuple(vs))
        self._slots = tuple(names)
        self._variants = tuple(variants)
        self._slot_pos = {n: i for i, n in enumerate(names)}
        self._variant_pos = [{v: j for j, v in enumerate(vs)} for vs in variants]
        self._sizes = np.array([len(vs) for vs in variants], dtype=np.int64)
        self._pairs = self._parse_interactions(interactions)
        self._constraints = self._parse_constraints(constraints)
        self._context = self._parse_context(context)
        self._cons_array = np.full((len(self._constraints), len(names)), -1, dtype=np.int64)
        for c, cons in enumerate(self._constraints):
            for d, vi in cons:
                self._cons_array[c, d] = vi
        if self._constraints and self.first_allowed() is None:
            raise DataValidationError(
                f"constraints == {list(constraints)!r} forbid every layout; "
                "at least one layout must be allowed."
            )

    # ------------------------------------------------------------------ parsing
    def _slot_index(self, name: object, where: str) -> int:
        if not isinstance(name, str) or name not in self._slot_pos:
            raise DataValidationError(
                f"{where}: unknown slot {name!r}; known slots: {list(self._slots)}."
            )
        return self._slot_pos[name]

    def _variant_index(self, d: int, value: object, where: str) -> int:
        pos = self._variant_pos[d]
        if not isinstance(value, str) or value not in pos:
            raise DataValidationError(
                f"{where}: unknown variant {value!r} for slot {self._slots[d]!r}; "
                f"allowed: {list(self._variants[d])}."
            )
        return pos[value]

    def _parse_interactions(self, interactions: Sequence[Sequence[str]] | None) -> IntArray:
        D = len(self._slots)
        if interactions is None:
            pairs = list(itertools.combinations(range(D), 2))
        else:
            if isinstance(interactions, str) or not isinstance(interactions, Sequence):
                raise DataValidationError(
                    f"interactions == {interactions!r}, must be a list of [slot, slot] pairs."
                )
            pairs = []
            seen: set[tuple[int, int]] = set()
            for i, pair in enumerate(interactions):
                if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                    raise DataValidationError(
                        f"interactions[{i}] == {pair!r}, must be a pair [slot, slot]."
                    )
                a = self._slot_index(pair[0], f"interactions[{i}]")
                b = self._slot_index(pair[1], f"interactions[{i}]")
                if a == b:
                    raise DataValidationError(
                        f"interactions[{i}] == {list(pair)!r} pairs a slot with itself; "
                        "the two slots must differ."
                    )
                key = (min(a, b), max(a, b))
                if key in seen:
                    raise DataValidationError(
                        f"interactions[{i}] == {list(pair)!r} is listed more than once."
                    )
                seen.add(key)
                pairs.append(key)
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def _parse_constraints(
        self, constraints: Sequence[Mapping[str, str]]
    ) -> tuple[tuple[tuple[int, int], ...], ...]:
        if isinstance(constraints, str | Mapping) or not isinstance(constraints, Sequence):
            raise DataValidationError(
                f"constraints == {constraints!r}, must be a list of {{slot: variant}} mappings."
            )
        out = []
        for i, cons in enumerate(constraints):
            if not isinstance(cons, Mapping) or len(cons) == 0:
                raise DataValidationError(
                    f"constraints[{i}] == {cons!r}, must be a non-empty {{slot: variant}} mapping."
                )
            entries = []
            for slot, variant in cons.items():
                d = self._slot_index(slot, f"constraints[{i}]")
                entries.append((d, self._variant_index(d, variant, f"constraints[{i}]")))
            out.append(tuple(sorted(entries)))
        return tuple(out)

    def _parse_context(self, context: Sequence[str]) -> tuple[str, ...]:
        if isinstance(context, str) or not isinstance(context, Sequence):
            raise DataValidationError(
                f"context == {context!r}, must be a list of context field names."
            )
        seen: set[str] = set()
        for i, name in enumerate(context):
            _check_name(name, f"context[{i}]")
            if name in seen:
                raise DataValidationError(f"context lists field {name!r} twice.")
            seen.add(name)
        return tuple(context)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> LayoutSpace:
        """Build from ``{"slots": ..., "interactions": ..., "constraints": ..., "context": ...}``.

        Only ``slots`` is required; see the class docstring for each field.
        """
        if not isinstance(spec, Mapping):
            raise DataValidationError(f"layout space == {spec!r}, must be a mapping.")
        unknown = [k for k in spec if k not in _SPACE_KEYS]
        if unknown:
            raise DataValidationError(
                f"layout space has unknown key {unknown[0]!r}; allowed keys: {list(_SPACE_KEYS)}."
            )
        if "slots" not in spec:
            raise DataValidationError("layout space is missing the required key 'slots'.")
        return cls(
            spec["slots"],
            interactions=spec.get("interactions"),
            constraints=spec.get("constraints") or (),
            context=spec.get("context") or (),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable specification; ``from_dict(to_dict())`` is an equal space."""
        return {
            "slots": {n: list(vs) for n, vs in zip(self._slots, self._variants, strict=True)},
            "interactions": [[self._slots[a], self._slots[b]] for a, b in self._pairs.tolist()],
            "constraints": [
                {self._slots[d]: self._variants[d][v] for d, v in cons}
                for cons in self._constraints
            ],
            "context": list(self._context),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayoutSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:
        return (
            f"LayoutSpace(n_slots={self.n_slots}, sizes={self._sizes.tolist()}, "
            f"n_pairs={self.n_pairs}, n_constraints={len(self._constraints)}, "
            f"context={list(self._context)})"
        )

    # ------------------------------------------------------------------ properties
    @property
    def slots(self) -> tuple[str, ...]:
        """Slot names in order."""
        return self._slots

    @property
    def variants(self) -> tuple[tuple[str, ...], ...]:
        """Variant names of each slot."""
        return self._variants

    @property
    def sizes(self) -> IntArray:
        """Number of variants of each slot, shape (n_slots,)."""
        return self._sizes.copy()

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def n_layouts(self) -> int:
        """Number of layouts before constraints (a Python int: it can exceed int64)."""
        return math.prod(int(n) for n in self._sizes)

    @property
    def pairs(self) -> IntArray:
        """Interacting slot pairs as indices ``(a, b)`` with ``a < b``, shape (n_pairs, 2)."""
        return self._pairs.copy()

    @property
    def n_pairs(self) -> int:
        return int(self._pairs.shape[0])

    @property
    def context(self) -> tuple[str, ...]:
        return self._context

    @property
    def constraint_array(self) -> IntArray:
        """Constraints as variant indices, -1 where a constraint leaves a slot free.

        Shape (n_constraints, n_slots).
        """
        return self._cons_array.copy()

    @property
    def n_constraints(self) -> int:
        return len(self._constraints)

    def without_interactions(self) -> LayoutSpace:
        """The same space with a main-effects-only model (no pairwise terms)."""
        spec = self.to_dict()
        spec["interactions"] = []
        return LayoutSpace.from_dict(spec)

    # ------------------------------------------------------------------ layouts
    def to_indices(self, layout: Mapping[str, str]) -> IntArray:
        """Variant index of each slot, shape (n_slots,); every slot must be given."""
        if not isinstance(layout, Mapping):
            raise DataValidationError(f"layout == {layout!r}, must be a {{slot: variant}} mapping.")
        extra = [k for k in layout if k not in self._slot_pos]
        if extra:
            raise DataValidationError(
                f"layout: unknown slot {extra[0]!r}; known slots: {list(self._slots)}."
            )
        out = np.empty(self.n_slots, dtype=np.int64)
        for d, name in enumerate(self._slots):
            if name not in layout:
                raise DataValidationError(f"layout is missing slot {name!r}.")
            out[d] = self._variant_index(d, layout[name], "layout")
        return out

    def from_indices(self, indices: IntArray | Sequence[int]) -> dict[str, str]:
        """The ``{slot: variant}`` dict of a row of variant indices."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.shape != (self.n_slots,):
            raise DataValidationError(f"indices has shape {idx.shape}, must be ({self.n_slots},).")
        if np.any(idx < 0) or np.any(idx >= self._sizes):
            raise DataValidationError(
                f"indices == {idx.tolist()}, must lie in [0, sizes) with sizes "
                f"{self._sizes.tolist()}."
            )
        return {n: self._variants[d][int(idx[d])] for d, n in enumerate(self._slots)}

    def encode(self, layout: Mapping[str, str]) -> int:
        """A layout's number in [0, n_layouts) (mixed radix, first slot most significant)."""
        code = 0
        for d, v in enumerate(self.to_indices(layout).tolist()):
            code = code * int(self._sizes[d]) + v
        return code

    def decode(self, code: int) -> dict[str, str]:
        """Inverse of :meth:`encode`."""
        if isinstance(code, bool) or not isinstance(code, int | np.integer):
            raise DataValidationError(f"code == {code!r}, must be an int.")
        code = int(code)
        if not 0 <= code < self.n_layouts:
            raise DataValidationError(f"code == {code}, must be in [0, {self.n_layouts}).")
        idx = [0] * self.n_slots
        for d in range(self.n_slots - 1, -1, -1):
            code, idx[d] = divmod(code, int(self._sizes[d]))
        return self.from_indices(idx)

    def codes(self, layouts: IntArray) -> IntArray:
        """Vectorised :meth:`encode` for index rows, shape (n, n_slots) -> (n,).

        Needs ``n_layouts < 2**62``.
        """
        if self.n_layouts >= 2**62:
            raise DataValidationError(
                f"n_layouts == {self.n_layouts}, must be < 2**62 for vectorised codes."
            )
        L = np.asarray(layouts, dtype=np.int64)
        code = np.zeros(L.shape[0], dtype=np.int64)
        for d in range(self.n_slots):
            code = code * self._sizes[d] + L[:, d]
        return code

    def all_layouts(self, *, max_layouts: int = 5_000_000) -> IntArray:
        """Every layout (allowed or not) as index rows in code order, shape (n_layouts, n_slots)."""
        n = self.n_layouts
        if n > max_layouts:
            raise DataValidationError(
                f"n_layouts == {n}, must be <= max_layouts == {max_layouts} to enumerate."
            )
        grids = np.meshgrid(*[np.arange(int(s)) for s in self._sizes], indexing="ij")
        return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)

    def violations(self, layouts: IntArray) -> BoolArray:
        """Whether each index row breaks a constraint, shape (n, n_slots) -> (n,)."""
        L = np.asarray(layouts, dtype=np.int64)
        if L.ndim != 2 or L.shape[1] != self.n_slots:
            raise DataValidationError(f"layouts has shape {L.shape}, must be (n, {self.n_slots}).")
        if not self._constraints:
            return np.zeros(L.shape[0], dtype=bool)
        A = self._cons_array
        match = (A[None, :, :] < 0) | (A[None, :, :] == L[:, None, :])
        return np.asarray(match.all(axis=2).any(axis=1))

    def is_allowed(self, layout: Mapping[str, str]) -> bool:
        """Whether a ``{slot: variant}`` layout satisfies every constraint."""
        return not bool(self.violations(self.to_indices(layout)[None, :])[0])

    def first_allowed(self, rng: np.random.Generator | None = None) -> IntArray | None:
        """An allowed layout by depth-first search (random variant order given ``rng``).

        Returns ``None`` when the constraints forbid every layout.
        """
        D = self.n_slots
        # constraints grouped by the last slot they mention: checked once that slot is set
        by_last: list[list[tuple[tuple[int, int], ...]]] = [[] for _ in range(D)]
        for cons in self._constraints:
            by_last[cons[-1][0]].append(cons)
        cur = np.zeros(D, dtype=np.int64)

        def order(d: int) -> list[int]:
            n = int(self._sizes[d])
            return rng.permutation(n).tolist() if rng is not None else list(range(n))

        stack: list[list[int]] = [order(0)]
        while stack:
            d = len(stack) - 1
            if not stack[d]:
                stack.pop()
                continue
            cur[d] = stack[d].pop()
            if any(all(cur[s] == v for s, v in cons) for cons in by_last[d]):
                continue
            if d == D - 1:
                return cur.copy()
            stack.append(order(d + 1))
        return None
