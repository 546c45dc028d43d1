"""The callout catalog: items, their attributes, and how attributes become features.

An item is a benefit message with attributes (benefit type, brand, colour, price, title,
...). The catalog turns each item's attributes into binary features ``(group, value)``:

- a *categorical* attribute gives one feature per value, group = attribute name;
- a *numeric* attribute is bucketed by fixed edges, group = attribute name, value = the
  bucket label such as ``"[10,20)"``;
- a *tokens* attribute (a title) is lower-cased, split on non-alphanumerics and each token
  hashed (CRC-32, stable across processes) into ``n_buckets`` features, group =
  ``"<name>_tokens"``.

When no spec is given for an attribute it is inferred from the first value seen: numbers
are numeric (edges at the quartiles of the values seen when the catalog is built from
records or a frame, else ``DEFAULT_EDGES``), lists of strings are multi-valued
categorical, strings are categorical, except attributes named in ``text_attributes``
(default ``("title",)``) which are hashed tokens.
"""

from __future__ import annotations

import math
import re
import sys
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import numpy as np

from memberlab._errors import DataValidationError, UnknownItemError

if TYPE_CHECKING:  # pandas is imported lazily: serving does not need it
    import pandas as pd

__all__ = ["DEFAULT_EDGES", "AttributeSpec", "Catalog"]

DEFAULT_EDGES: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
_TOKEN_RE = re.compile(r"[^0-9a-z]+")
Kind = Literal["categorical", "numeric", "tokens"]


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """How one attribute becomes features.

    Parameters
    ----------
    kind : {"categorical", "numeric", "tokens"}
    edges : tuple of float
        Increasing bucket edges of a numeric attribute (``len(edges) + 1`` buckets).
    n_buckets : int
        Hash buckets of a tokens attribute.
    """

    kind: Kind = "categorical"
    edges: tuple[float, ...] = DEFAULT_EDGES
    n_buckets: int = 64

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "numeric", "tokens"):
            raise DataValidationError(
                f"kind == {self.kind!r}, must be 'categorical', 'numeric' or 'tokens'."
            )
        if self.kind == "numeric":
            e = np.asarray(self.edges, dtype=np.float64)
            if e.size == 0 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                raise DataValidationError(
                    f"edges == {self.edges}, must be a non-empty strictly increasing sequence."
                )
        if self.n_buckets < 1:
            raise DataValidationError(f"n_buckets == {self.n_buckets}, must be >= 1.")

    def group(self, name: str) -> str:
        """Feature group of this attribute."""
        return f"{name}_tokens" if self.kind == "tokens" else name

    def encode(self, name: str, value: Any) -> list[str]:
        """Feature values of one attribute value (empty for a missing value)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return []
        if self.kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise DataValidationError(
                    f"attribute {name!r} is numeric, got {value!r} ({type(value).__name__})."
                )
            return [_bucket_label(float(value), self.edges)]
        if self.kind == "tokens":
            tokens = sorted(set(t for t in _TOKEN_RE.split(str(value).lower()) if t))
            buckets = sorted({zlib.crc32(t.encode()) % self.n_buckets for t in tokens})
            return [f"h{b}" for b in buckets]
        if isinstance(value, list | tuple | set | frozenset):
            return sorted({str(v) for v in value})
        return [str(value)]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": list(self.edges), "n_buckets": self.n_buckets}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AttributeSpec:
        return cls(
            kind=d["kind"], edges=tuple(float(x) for x in d["edges"]), n_buckets=int(d["n_buckets"])
        )


def _bucket_label(x: float, edges: tuple[float, ...]) -> str:
    if not math.isfinite(x):
        raise DataValidationError(f"numeric attribute value == {x}, must be finite.")
    i = int(np.searchsorted(np.asarray(edges), x, side="right"))
    lo = "-inf" if i == 0 else f"{edges[i - 1]:g}"
    hi = "inf" if i == len(edges) else f"{edges[i]:g}"
    return f"[{lo},{hi})"


def _check_json_value(item_id: str, name: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        out = [v.item() if isinstance(v, np.generic) else v for v in value]
        if all(isinstance(v, str | bool | int | float) for v in out):
            return sorted(str(v) for v in out) if isinstance(value, set | frozenset) else out
    raise DataValidationError(
        f"item {item_id!r}: attribute {name!r} == {value!r}; values must be str, bool, int, "
        "float, None or a list of those."
    )


def _is_frame(obj: object) -> TypeGuard[pd.DataFrame]:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas for the check)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def _frame_records(frame: pd.DataFrame, id_column: str) -> list[dict[str, Any]]:
    """A DataFrame's rows as records, missing values (NaN, None) dropped to ``None``."""
    if id_column not in frame.columns:
        raise DataValidationError(
            f"id_column == {id_column!r} is not a column; columns are {list(frame.columns)}."
        )
    return [
        {str(k): (None if _is_missing(v) else v) for k, v in rec.items()}
        for rec in frame.to_dict(orient="records")
    ]


@dataclass(slots=True)
class Catalog:
    """Items with attributes; items can be added, updated and retired at any time.

    Parameters
    ----------
    spec : mapping of attribute name to AttributeSpec, optional
        Encoding of named attributes; others are inferred on first sight.
    text_attributes : sequence of str
        Attribute names inferred as hashed title tokens.

    Examples
    --------
    >>> cat = Catalog.from_records([
    ...     {"item_id": "a", "benefit": "video", "price": 5.0},
    ...     {"item_id": "b", "benefit": "music", "price": 15.0},
    ... ])
    >>> cat.active_ids()
    ['a', 'b']
    >>> cat.features("a")[:1]
    [('benefit', 'video')]
    """

    spec: dict[str, AttributeSpec] = field(default_factory=dict)
    text_attributes: tuple[str, ...] = ("title",)
    _attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _active: dict[str, bool] = field(default_factory=dict)
    _features: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _version: int = 0

    # --------------------------------------------------------------- construction
    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]] | pd.DataFrame,
        *,
        id_column: str = "item_id",
        spec: Mapping[str, AttributeSpec] | None = None,
        text_attributes: Sequence[str] = ("title",),
    ) -> Catalog:
        """Build from dicts, or a DataFrame's rows, each with an ``id_column`` and attributes.

        A pandas DataFrame has one row per item and a column ``id_column``; missing values
        (NaN, None) mean the item lacks that attribute, as with :meth:`from_frame`.
        Numeric attributes without a spec get bucket edges at the quartiles of the values.
        """
        rows: list[Mapping[str, Any]]
        if _is_frame(records):
            rows = list(_frame_records(records, id_column))
        elif isinstance(records, Mapping | str | bytes) or not isinstance(records, Iterable):
            raise DataValidationError(
                f"records == {records!r:.80}, must be a sequence of mappings (one per item) "
                "or a pandas DataFrame with one row per item."
            )
        else:
            rows = list(records)  # type: ignore[arg-type]  # the DataFrame case is above
        for rec in rows:
            if not isinstance(rec, Mapping):
                raise DataValidationError(
                    f"a record == {rec!r:.80}, must be a mapping with an {id_column!r} field."
                )
        full_spec = dict(spec or {})
        numeric: dict[str, list[float]] = {}
        for rec in rows:
            for name, value in rec.items():
                if name == id_column or name in full_spec or name in text_attributes:
                    continue
                is_num = isinstance(value, int | float | np.number) and not isinstance(value, bool)
                if is_num and math.isfinite(float(value)):
                    numeric.setdefault(name, []).append(float(value))
        for name, values in numeric.items():
            qs = np.unique(np.quantile(values, [0.25, 0.5, 0.75]))
            full_spec[name] = AttributeSpec("numeric", edges=tuple(float(q) for q in qs))
        cat = cls(spec=full_spec, text_attributes=tuple(text_attributes))
        for rec in rows:
            if id_column not in rec:
                raise DataValidationError(f"a record has no {id_column!r} field: {dict(rec)!r}.")
            attrs = {k: v for k, v in rec.items() if k != id_column}
            cat.add(str(rec[id_column]), attrs)
        return cat

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        id_column: str = "item_id",
        *,
        spec: Mapping[str, AttributeSpec] | None = None,
        text_attributes: Sequence[str] = ("title",),
    ) -> Catalog:
        """Build from a DataFrame with one row per item and a column ``id_column``.

        The same as :meth:`from_records` given the DataFrame.
        """
        if not _is_frame(frame):
            raise DataValidationError(f"frame == {frame!r:.80}, must be a pandas DataFrame.")
        return cls.from_records(
            frame, id_column=id_column, spec=spec, text_attributes=text_attributes
        )

    # --------------------------------------------------------------- mutation
    def add(self, item_id: str, attributes: Mapping[str, Any]) -> None:
        """Create an item or replace the attributes of an existing one (re-activating it)."""
        if not isinstance(item_id, str) or not item_id:
            raise DataValidationError(f"item_id == {item_id!r}, must be a non-empty string.")
        clean = {str(k): _check_json_value(item_id, str(k), v) for k, v in attributes.items()}
        feats: list[tuple[str, str]] = []
        for name in sorted(clean):
            spec = self._spec_for(name, clean[name])
            group = spec.group(name)
            feats.extend((group, v) for v in spec.encode(name, clean[name]))
        self._attrs[item_id] = clean
        self._features[item_id] = feats
        self._active[item_id] = True
        self._version += 1

    def retire(self, item_id: str) -> None:
        """Stop serving an item; its learned weights are kept (it may come back)."""
        if item_id not in self._attrs:
            raise UnknownItemError(f"item_id == {item_id!r} is not in the catalog.")
        if self._active[item_id]:
            self._active[item_id] = False
            self._version += 1

    def _spec_for(self, name: str, value: Any) -> AttributeSpec:
        spec = self.spec.get(name)
        if spec is None:
            if name in self.text_attributes:
                spec = AttributeSpec("tokens")
            elif isinstance(value, int | float) and not isinstance(value, bool):
                spec = AttributeSpec("numeric")
            elif value is None:
                return AttributeSpec("categorical")  # decide on first non-missing value
            else:
                spec = AttributeSpec("categorical")
            self.spec[name] = spec
        return spec

    # --------------------------------------------------------------- queries
    @property
    def version(self) -> int:
        """Incremented on every add or retire; lets policies refresh caches."""
        return self._version

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._attrs

    def __len__(self) -> int:
        return len(self._attrs)

    def is_active(self, item_id: str) -> bool:
        self._check(item_id)
        return self._active[item_id]

    def active_ids(self) -> list[str]:
        """Ids of the items that can be served, in insertion order."""
        return [i for i, a in self._active.items() if a]

    def all_ids(self) -> list[str]:
        return list(self._attrs)

    def attributes(self, item_id: str) -> dict[str, Any]:
        """A copy of an item's attributes."""
        self._check(item_id)
        return dict(self._attrs[item_id])

    def features(self, item_id: str) -> list[tuple[str, str]]:
        """The item's binary features as ``(group, value)`` pairs."""
        self._check(item_id)
        return list(self._features[item_id])

    def attribute_values(self, item_id: str, name: str) -> list[str]:
        """Encoded values of one attribute of an item (used for context crosses)."""
        self._check(item_id)
        value = self._attrs[item_id].get(name)
        spec = self.spec.get(name)
        if spec is None:
            return []
        return spec.encode(name, value)

    def _check(self, item_id: str) -> None:
        if item_id not in self._attrs:
            raise UnknownItemError(f"item_id == {item_id!r} is not in the catalog.")

    def to_frame(self) -> pd.DataFrame:
        """One row per item: ``item_id``, ``active`` and the attributes."""
        rows = [{"item_id": i, "active": self._active[i], **a} for i, a in self._attrs.items()]
        import pandas as pd

        return pd.DataFrame(rows)

    # --------------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (used inside recommender snapshots)."""
        return {
            "spec": {k: v.to_json() for k, v in self.spec.items()},
            "text_attributes": list(self.text_attributes),
            "items": [
                {"item_id": i, "active": self._active[i], "attributes": a}
                for i, a in self._attrs.items()
            ],
            "version": self._version,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Catalog:
        cat = cls(
            spec={k: AttributeSpec.from_json(v) for k, v in d["spec"].items()},
            text_attributes=tuple(d["text_attributes"]),
        )
        for rec in d["items"]:
            cat.add(rec["item_id"], rec["attributes"])
            if not rec["active"]:
                cat.retire(rec["item_id"])
        cat._version = int(d["version"])
        return cat


def _is_missing(v: object) -> bool:
    try:
        return (
            v is None or type(v).__name__ in ("NAType", "NaTType") or bool(v != v)
        )  # NaN, NaT and pd.NA are unequal to themselves
    except (TypeError, ValueError):
        return False


def iter_pairs(values: Iterable[str], others: Iterable[str]) -> list[str]:
    """All ``a|b`` combinations, used to name cross features."""
    o = list(others)
    return [f"{a}|{b}" for a in values for b in o]
