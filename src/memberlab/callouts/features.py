"""Featurisation of (shopper context, callout item) pairs, apart from the recommender.

A pair becomes binary features ``(group, value)``:

- ``("bias", "1")``;
- ``("ctx.<key>", value)`` for each context value (list values are multi-valued);
- the item's own features from the :class:`~memberlab.callouts.Catalog` and, with
  ``item_feature``, ``("item", item_id)``;
- crosses ``("<key>x<attribute>", "<context value>|<attribute value>")``. With
  ``crosses=None`` (the default) *every* context key present in the request crosses with
  *every* attribute the item has, as Vowpal Wabbit's all-namespace quadratic
  interactions do; each cross is its own feature group, so the empirical-Bayes
  meta-prior can shrink the crosses that do not matter. An explicit list narrows the set.

Numeric context values (``{"age": 34.5}``; not bools) are bucketed, never one category
per value: with ``context_edges[key]`` given, by those edges (labels like
``"[30,40)"``, as numeric item attributes); otherwise by quarter-octaves of the
magnitude, ``[2**(k/4), 2**((k+1)/4))`` with the sign kept and 0 its own bucket (about
19% wide, scale-free: 20 <= age < 22 share one bucket).

This class holds no learned state; it only caches encodings (per catalog version).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from memberlab._errors import DataValidationError
from memberlab.callouts.catalog import Catalog, _bucket_label

__all__ = ["BIAS_GROUP", "ITEM_GROUP", "CalloutFeatures", "ContextCode", "numeric_bucket"]

BIAS_GROUP = "bias"
ITEM_GROUP = "item"
_MAX_CACHE = 4096
_MISS = object()  # cache-miss sentinel (a field without values is cached as None)
Key = tuple[str, str]
Field = tuple[str, tuple[str, ...]]  # one encoded context field: (key, values)


def numeric_bucket(x: float) -> str:
    """Quarter-octave bucket label of a number (see the module docstring)."""
    if x == 0:
        return "0"
    # log2 of the largest floats rounds to 1024: they share the top bucket, which ends
    # past the float range, at infinity
    k = min(math.floor(4.0 * math.log2(abs(x))), 4095)
    lo, hi = 2.0 ** (k / 4), 2.0 ** ((k + 1) / 4) if k < 4095 else math.inf
    return f"{'-' if x < 0 else ''}[{lo:.4g},{hi:.4g})"


def _norm_value(v: Any) -> Any:
    if isinstance(v, list | tuple | set | frozenset | np.ndarray):
        return tuple(sorted({str(x) for x in v}))
    if isinstance(v, np.generic):
        return v.item()
    try:
        hash(v)
    except TypeError:
        return str(v)
    return v


def context_key(context: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable key of a context (equal contexts, equal keys)."""
    try:
        key = tuple(sorted(context.items()))
        hash(key)
        return key
    except TypeError:
        return tuple(sorted((str(k), _norm_value(v)) for k, v in context.items()))


class ContextCode:
    """One encoded context: its key, its features and its values per key."""

    __slots__ = ("features", "key", "values")

    def __init__(self, key: Any, features: list[Key], values: dict[str, tuple[str, ...]]) -> None:
        self.key = key
        self.features = features
        self.values = values


class CalloutFeatures:
    """Feature keys of (context, item) pairs; see the module docstring.

    Parameters
    ----------
    catalog : Catalog
    crosses : sequence of (context_key, item_attribute), or None for all
    item_feature : bool
    context_edges : mapping of context key to increasing edges, optional
    """

    def __init__(
        self,
        catalog: Catalog,
        crosses: Sequence[tuple[str, str]] | None,
        *,
        item_feature: bool = True,
        context_edges: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.crosses = None if crosses is None else [(str(a), str(b)) for a, b in crosses]
        self.item_feature = item_feature
        self.context_edges = {
            k: tuple(float(e) for e in v) for k, v in (context_edges or {}).items()
        }
        self._seen = -1
        self._items: dict[str, list[Key]] = {}
        self._attrs: dict[str, list[tuple[str, list[str]]]] = {}
        self._ctx: dict[Any, ContextCode] = {}
        self._fields: dict[Any, Field | None] = {}
        self._rows: dict[tuple[Any, str], list[Key]] = {}
        self._atoms: dict[str, list[tuple[str, str]]] = {}
        self._allowed = None if self.crosses is None else set(self.crosses)

    def sync(self) -> None:
        """Drop item encodings when the catalog changed."""
        if self.catalog.version != self._seen:
            self._items.clear()
            self._attrs.clear()
            self._rows.clear()
            self._atoms.clear()
            self._seen = self.catalog.version

    def known_attributes(self) -> list[str]:
        """Attribute names some item of the catalog has."""
        names: set[str] = set()
        for i in self.catalog.all_ids():
            names.update(self.catalog.attributes(i))
        return sorted(names)

    # ---------------------------------------------------------------- context
    def _values(self, key: str, v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, tuple | list | set | frozenset):
            return sorted({str(x) for x in v})
        if isinstance(v, int | float) and not isinstance(v, bool):
            x = float(v)
            if not math.isfinite(x):
                raise DataValidationError(f"context[{key!r}] == {v!r}, must be finite.")
            edges = self.context_edges.get(key)
            return [_bucket_label(x, edges) if edges else numeric_bucket(x)]
        return [str(v)]

    def _field(self, key: Any, v: Any) -> Field | None:
        """The encoded field ``(str(key), values)`` of one context entry (None when it
        has no values), cached by (key, type, value): a fresh context made of familiar
        fields costs one dictionary lookup per field."""
        t = type(v)
        fk: Any = (key, t, tuple(v)) if t is list else (key, t, v)
        try:
            hit = self._fields.get(fk, _MISS)
        except TypeError:  # unhashable (a dict, a list of lists): not cached
            fk, hit = None, _MISS
        if hit is _MISS:
            vals = tuple(self._values(str(key), v))
            hit = (str(key), vals) if vals else None
            if fk is not None:
                if len(self._fields) > 16 * _MAX_CACHE:
                    self._fields.clear()
                self._fields[fk] = hit
        return hit  # type: ignore[return-value]

    def encode(self, context: Mapping[str, Any]) -> tuple[Field, ...]:
        """The encoded context: ``(key, values)`` of each key with values, sorted by key.

        Equal encodings share every downstream cache (rows, serving blocks), so raw
        values in one numeric bucket are one context to them. The loop inlines the
        cache hit of :meth:`_field`: this runs once per decision.
        """
        # Sorting the keys alone gives the order of sorting the items (keys are
        # distinct) at a fraction of its cost: no tuple comparisons.
        try:
            keys = sorted(context)
        except TypeError:  # keys of mixed types
            keys = sorted(context, key=str)
        get = self._fields.get
        out: list[Field] = []
        hit: Any
        for k in keys:
            v = context[k]
            t = type(v)
            try:
                hit = get((k, t, tuple(v)) if t is list else (k, t, v), _MISS)
            except TypeError:  # unhashable: _field encodes it uncached
                hit = _MISS
            if hit is _MISS:
                hit = self._field(k, v)
            if hit is not None:
                out.append(hit)
        return tuple(out)

    def context(self, context: Mapping[str, Any]) -> ContextCode:
        """The encoding of one context (cached per field and per encoded context)."""
        enc = self.encode(context)
        hit = self._ctx.get(enc)
        if hit is None:
            feats = [(f"ctx.{k}", v) for k, vals in enc for v in vals]
            if len(self._ctx) > _MAX_CACHE:
                self._ctx.clear()
            hit = ContextCode(enc, feats, dict(enc))
            self._ctx[enc] = hit
        return hit

    # ---------------------------------------------------------------- items
    def item(self, item_id: str) -> list[Key]:
        """The item's own features (raises UnknownItemError for an unknown id)."""
        hit = self._items.get(item_id)
        if hit is None:
            hit = self.catalog.features(item_id)
            if self.item_feature:
                hit.append((ITEM_GROUP, item_id))
            self._items[item_id] = hit
            attrs = self.catalog.attributes(item_id)
            names = sorted(attrs) if self.crosses is None else [a for _, a in self.crosses]
            self._attrs[item_id] = [(a, self.catalog.attribute_values(item_id, a)) for a in names]
        return hit

    def item_atoms(self, item_id: str) -> list[tuple[str, str]]:
        """``(attribute, encoded value)`` of every crossable value of the item (cached)."""
        hit = self._atoms.get(item_id)
        if hit is None:
            names = sorted(self.catalog.attributes(item_id))
            if self._allowed is not None:
                crossed = {a for _, a in self._allowed}
                names = [a for a in names if a in crossed]
            hit = [(a, y) for a in names for y in self.catalog.attribute_values(item_id, a)]
            self._atoms[item_id] = hit
        return hit

    def crosses_pair(self, context_key: str, attribute: str) -> bool:
        """Whether this context key crosses with this attribute."""
        return self._allowed is None or (context_key, attribute) in self._allowed

    def cross_pairs(
        self, code: ContextCode, item_id: str
    ) -> list[tuple[str, Sequence[str], str, list[str]]]:
        """``(context key, context values, attribute, attribute values)`` of each cross."""
        self.item(item_id)
        attrs = self._attrs[item_id]
        if self.crosses is None:
            return [
                (ck, cv, a, av) for ck, cv in code.values.items() if cv for a, av in attrs if av
            ]
        return [
            (ck, code.values.get(ck, ()), a, av)
            for (ck, _), (a, av) in zip(self.crosses, attrs, strict=True)
        ]

    def row(self, code: ContextCode, item_id: str) -> list[Key]:
        """Every feature key of (context, item), bias first (cached)."""
        rk = (code.key, item_id)
        hit = self._rows.get(rk)
        if hit is None:
            hit = [(BIAS_GROUP, "1"), *code.features, *self.item(item_id)]
            for ck, cv, a, av in self.cross_pairs(code, item_id):
                g = f"{ck}x{a}"
                hit.extend((g, f"{x}|{y}") for x in cv for y in av)
            if len(self._rows) > 16 * _MAX_CACHE:
                self._rows.clear()
            self._rows[rk] = hit
        return hit
