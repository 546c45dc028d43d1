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


# Value types whose equal values of one type encode alike (1 == 1.0 == True, but they
# differ in type): cached by (key, type, value).
_PLAIN = frozenset({str, bool, int, float, type(None)})
_MULTI = (list, tuple, set, frozenset)


def _field_key(key: str, v: Any) -> tuple[Any, ...]:
    """The field cache's key of ``(key, v)``: equal keys, equal encoded fields.

    A multi-valued field's values are those of ``str(x)`` for each element, so it is
    keyed by those strings (``tuple(v)`` made ``[1]``, ``[1.0]`` and ``[True]`` one
    key); another value by its type and value, plus its string where that is not
    implied (``Decimal("1.0") == Decimal("1.00")``). Raises TypeError if unhashable.
    """
    t = type(v)
    if t in _PLAIN:
        return (key, t, v)
    if isinstance(v, _MULTI):
        return (key, t, tuple(map(str, v)))  # for a list of strings, tuple(v)
    k = (key, t, v, str(v))
    hash(k)
    return k


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


def context_key(context: Mapping[str, Any]) -> tuple[tuple[Any, ...], ...]:
    """A hashable key of a context: contexts with equal keys encode alike.

    Values are keyed with their type, and sequences by what they encode to
    (:func:`_norm_value`): ``{"m": 1}``, ``{"m": 1.0}`` and ``{"m": True}`` are equal in
    Python but not to the encoder (True is a category, 1 a number), so grouping a batch
    by Python equality scored one of them with the other's posterior."""
    try:
        key = tuple(
            sorted(
                (k, type(v), _norm_value(v) if isinstance(v, tuple | frozenset) else v)
                for k, v in context.items()
            )
        )
        hash(key)
        return key
    except TypeError:  # keys of mixed types, or unhashable values
        return tuple(sorted((str(k), type(v).__name__, _norm_value(v)) for k, v in context.items()))


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
        self._orders: dict[tuple[Any, ...], tuple[str, ...]] = {}
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
        has no values), cached by :func:`_field_key`: a fresh context made of familiar
        fields costs one dictionary lookup per field."""
        sk = key if type(key) is str else str(key)  # the field is one of str(key)
        try:
            fk = _field_key(sk, v)
            hit = self._fields.get(fk, _MISS)
        except TypeError:  # unhashable (a dict, a list of lists): not cached
            fk, hit = None, _MISS
        if hit is _MISS:
            vals = tuple(self._values(sk, v))
            hit = (sk, vals) if vals else None
            if fk is not None:
                if len(self._fields) > 16 * _MAX_CACHE:
                    self._fields.clear()
                self._fields[fk] = hit
        return hit  # type: ignore[return-value]

    def encode(self, context: Mapping[str, Any]) -> tuple[Field, ...]:
        """The encoded context: ``(key, values)`` of each key with values, sorted by key.

        Equal encodings share every downstream cache (rows, serving blocks), so raw
        values in one numeric bucket are one context to them. This runs once per
        decision: the key order is cached per tuple of keys (for string keys, whose
        order is that of sorting them), and the loop inlines :meth:`_field`'s cache hit
        for the common value types.
        """
        keys = self._orders.get(tuple(context))
        if keys is None:
            return self._encode_new_keys(context)
        get = self._fields.get
        out: list[Field] = []
        hit: Any
        for k in keys:
            v = context[k]
            t = type(v)
            if t in _PLAIN:
                hit = get((k, t, v), _MISS)
            elif t is list:
                try:
                    # join checks in C that every element is a string: then the
                    # elements are their own strings, and tuple(v) is _field_key's key
                    "".join(v)
                    hit = get((k, t, tuple(v)), _MISS)
                except TypeError:
                    hit = _MISS
            else:
                hit = _MISS
            if hit is _MISS:
                hit = self._field(k, v)
            if hit is not None:
                out.append(hit)
        return tuple(out)

    def _encode_new_keys(self, context: Mapping[str, Any]) -> tuple[Field, ...]:
        """:meth:`encode` of a context whose tuple of keys is not cached (sorts them)."""
        try:
            keys = sorted(context)
        except TypeError:  # keys of mixed types
            keys = sorted(context, key=str)
        # Only all-string key sets are cached: a tuple of other keys can equal one that
        # sorts differently or spells differently (1 == 1.0 == True).
        if all(type(k) is str for k in keys):
            if len(self._orders) > _MAX_CACHE:
                self._orders.clear()
            self._orders[tuple(context)] = tuple(keys)
        out = (self._field(k, context[k]) for k in keys)
        return tuple(f for f in out if f is not None)

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
