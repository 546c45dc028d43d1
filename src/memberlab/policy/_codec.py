"""One snapshot codec for every policy kind: a JSON header plus an ``.npz`` of arrays.

Layout of a snapshot (bytes, or a file written by ``save``)::

    b"MEMBERLAB-POLICY\\n"          magic line
    one line                       JSON header (UTF-8, no raw newline), then b"\\n"
    the rest                       an ``.npz`` archive (numpy, ``allow_pickle=False``)

The header holds ``format``, ``schema_version`` (:data:`SCHEMA_VERSION`, one number for
every kind), ``kind`` (the class's ``policy_kind``), ``params`` (every constructor
argument from ``get_params()`` except ``rng``, encoded by :func:`encode_value`) and
``state`` (the kind's own learned scalars, e.g. the feature registry and the version).
A parameter's numeric tables (the value kind's member values) are stored in the arrays
as ``param.<name>.<table>`` with a tag in the header; snapshots that hold them in the
header as JSON lists (written before) read the same.
Version 1 was the per-kind formats of callouts and layouts; each kind keeps a reader for
its version-1 snapshots. Nothing is pickled; anything malformed raises
:class:`~memberlab.DataValidationError` (a wrong version :class:`~memberlab.SchemaVersionError`).
"""

from __future__ import annotations

import inspect
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from memberlab._errors import DataValidationError, SchemaVersionError
from memberlab._typing import FloatArray

__all__ = [
    "MAGIC",
    "PARAM_ARRAY_PREFIX",
    "SCHEMA_VERSION",
    "PolicyCodecMixin",
    "decode_value",
    "encode_value",
    "read_snapshot",
    "snapshot_kind",
    "write_snapshot",
]

MAGIC = b"MEMBERLAB-POLICY\n"
SCHEMA_VERSION = 2
_TYPE = "__type__"
#: arrays named so hold parameters' numeric tables (the header tags them), not state
PARAM_ARRAY_PREFIX = "param."


def _array_ref(a: Any, arrays: dict[str, FloatArray], path: str) -> dict[str, Any]:
    """Put ``a`` in the snapshot's arrays under ``param.<path>``; the header keeps a tag."""
    key = f"{PARAM_ARRAY_PREFIX}{path}"
    arrays[key] = np.asarray(a, dtype=np.float64)
    return {_TYPE: "array", "key": key}


def encode_value(value: Any, arrays: dict[str, FloatArray] | None = None, path: str = "") -> Any:
    """A JSON-ready form of a hyperparameter value (tagged for memberlab types).

    With ``arrays`` (what :func:`write_snapshot` passes), a parameter's numeric tables
    (member values) go there, under ``param.<path>``, and the header keeps a tag naming
    the array; without it everything is JSON (for comparing parameters)."""
    from memberlab.bayes.groups import GroupPrior
    from memberlab.callouts.catalog import Catalog
    from memberlab.layouts.space import LayoutSpace

    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, int | float):
        return value
    if isinstance(value, GroupPrior):
        return {_TYPE: "GroupPrior", "mean": value.mean, "var": value.var}
    if isinstance(value, Catalog):
        return {_TYPE: "Catalog", "value": value.to_json()}
    if isinstance(value, LayoutSpace):
        return {_TYPE: "LayoutSpace", "value": value.to_dict()}
    from memberlab.value._member import MemberValues

    if isinstance(value, MemberValues):
        if arrays is None:
            return {_TYPE: "MemberValues", "value": value.to_dict()}
        data = value.to_dict(tables=False)
        for name in MemberValues.TABLES:
            if data[name] is not None:
                data[name] = _array_ref(data[name], arrays, f"{path}.{name}")
        return {_TYPE: "MemberValues", "value": data}
    if isinstance(value, Mapping):
        return {
            _TYPE: "dict",
            "items": [[str(k), encode_value(v, arrays, f"{path}.{k}")] for k, v in value.items()],
        }
    if isinstance(value, list | tuple):
        return [encode_value(v, arrays, f"{path}.{n}") for n, v in enumerate(value)]
    raise DataValidationError(
        f"cannot store a hyperparameter of type {type(value).__name__} ({value!r})."
    )


def decode_value(value: Any, arrays: Mapping[str, Any] | None = None) -> Any:
    """Inverse of :func:`encode_value` (lists come back as lists); ``arrays`` are the
    snapshot's arrays, for parameters whose tables are stored there."""
    from memberlab.bayes.groups import GroupPrior
    from memberlab.callouts.catalog import Catalog
    from memberlab.layouts.space import LayoutSpace

    if isinstance(value, list):
        return [decode_value(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TYPE)
    if tag == "array":
        key = str(value.get("key"))
        if arrays is None or key not in arrays:
            raise DataValidationError(f"policy snapshot has no array {key!r} for a parameter.")
        return np.asarray(arrays[key], dtype=np.float64)
    if tag == "GroupPrior":
        return GroupPrior(float(value["mean"]), float(value["var"]))
    if tag == "Catalog":
        return Catalog.from_json(value["value"])
    if tag == "LayoutSpace":
        return LayoutSpace.from_dict(value["value"])
    if tag == "MemberValues":
        from memberlab.value._member import MemberValues

        data = dict(value["value"])
        for name in MemberValues.TABLES:  # tables in the arrays (header-only before)
            data[name] = decode_value(data.get(name), arrays)
        return MemberValues.from_dict(data)
    if tag == "dict":
        return {str(k): decode_value(v, arrays) for k, v in value["items"]}
    raise DataValidationError(f"unknown value tag {tag!r} in a policy snapshot.")


def write_snapshot(
    kind: str,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    arrays: Mapping[str, FloatArray],
) -> bytes:
    """Encode one snapshot (see the module docstring)."""
    clash = [k for k in arrays if k.startswith(PARAM_ARRAY_PREFIX)]
    if clash:
        raise DataValidationError(f"array names {clash} are reserved for parameters.")
    tables: dict[str, FloatArray] = {}
    header = {
        "format": "memberlab-policy",
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "params": {k: encode_value(v, tables, k) for k, v in params.items()},
        "state": dict(state),
    }
    head = json.dumps(header).encode()  # key order kept: slot and item order matter
    buf = io.BytesIO()
    out = {**{k: np.asarray(v) for k, v in arrays.items()}, **tables}
    np.savez(buf, **out)  # type: ignore[arg-type]
    return MAGIC + head + b"\n" + buf.getvalue()


def snapshot_kind(data: bytes) -> str | None:
    """The ``kind`` a snapshot's header names (None when ``data`` is not a snapshot of
    this codec, e.g. a version-1 callouts file), without decoding the rest."""
    if not data.startswith(MAGIC):
        return None
    cut = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : cut if cut >= 0 else len(data)])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    kind = header.get("kind") if isinstance(header, dict) else None
    return kind if isinstance(kind, str) else None


def read_snapshot(
    data: bytes, *, kind: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Decode a snapshot of ``kind``: ``(params, state, arrays)``.

    Raises
    ------
    DataValidationError
        Not a snapshot, truncated, a header that is not JSON, the wrong kind, or an
        archive numpy cannot read.
    SchemaVersionError
        A schema version this release does not read.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataValidationError(f"snapshot must be bytes, got {type(data).__name__}.")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise DataValidationError("data is not a memberlab policy snapshot (bad magic line).")
    off = len(MAGIC)
    cut = data.find(b"\n", off)
    if cut < 0:
        raise DataValidationError("policy snapshot is truncated (no complete header line).")
    try:
        header = json.loads(data[off:cut])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"policy snapshot header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != "memberlab-policy":
        raise DataValidationError("policy snapshot header has no 'format': 'memberlab-policy'.")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"policy snapshot has schema_version {version!r}; this release reads "
            f"{SCHEMA_VERSION} (and version 1 of each kind through its own reader)."
        )
    if header.get("kind") != kind:
        raise DataValidationError(
            f"policy snapshot holds kind {header.get('kind')!r}, expected {kind!r}."
        )
    try:
        with np.load(io.BytesIO(data[cut + 1 :]), allow_pickle=False) as z:
            arrays = {k: np.array(z[k]) for k in z.files}
        tables = {k: arrays.pop(k) for k in list(arrays) if k.startswith(PARAM_ARRAY_PREFIX)}
        params = {str(k): decode_value(v, tables) for k, v in dict(header["params"]).items()}
        state = dict(header["state"])
    except DataValidationError:
        raise
    except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataValidationError(f"policy snapshot is malformed: {exc!r}") from exc
    return params, state, arrays


class PolicyCodecMixin:
    """``get_params``, ``to_bytes``/``from_bytes`` and ``save``/``load`` for a policy.

    A subclass sets ``policy_kind``, stores every keyword-only constructor argument
    unchanged under its own name (as scikit-learn estimators do) and implements
    ``_state_header()`` / ``_state_arrays()`` (learned state) and ``_restore(state,
    arrays)``. ``rng`` is not a hyperparameter of the snapshot: the policy's generator
    state travels in ``state["rng_state"]``.
    """

    policy_kind: ClassVar[str]
    # Old parameter name -> current name, so snapshots written before a rename still load.
    renamed_params: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """Every constructor argument, read back from the attribute of the same name."""
        return {name: getattr(self, name) for name in self._param_names()}

    # -- to be provided by the kind --------------------------------------------------
    def _state_header(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, FloatArray]:
        raise NotImplementedError

    def _restore(self, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def _construct(cls, params: Mapping[str, Any]) -> Self:
        """The policy from stored parameters (a kind may skip checks that only make
        sense for a user's new policy)."""
        return cls(**params)

    @classmethod
    def _from_legacy(cls, data: bytes) -> Self | None:
        """Read a version-1 snapshot of this kind, or None when ``data`` is not one."""
        return None

    # -- the codec ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Snapshot: JSON header (every parameter, learned scalars) plus ``.npz`` arrays."""
        params = {k: v for k, v in self.get_params().items() if k != "rng"}
        return write_snapshot(self.policy_kind, params, self._state_header(), self._state_arrays())

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Rebuild a policy from :meth:`to_bytes` output (or a version-1 snapshot)."""
        if isinstance(data, bytes | bytearray) and not bytes(data).startswith(MAGIC):
            legacy = cls._from_legacy(bytes(data))
            if legacy is not None:
                return legacy
        params, state, arrays = read_snapshot(data, kind=cls.policy_kind)
        params = {cls.renamed_params.get(k, k): v for k, v in params.items()}
        try:
            obj = cls._construct(params)
            obj._restore(state, arrays)
        except DataValidationError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataValidationError(f"policy snapshot is malformed: {exc!r}") from exc
        return obj

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path``."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a policy written by :meth:`save`."""
        return cls.from_bytes(Path(path).read_bytes())
