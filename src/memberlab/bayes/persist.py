"""Versioned save/load of posterior records: JSON for scalars and metadata, .npz for arrays.

No pickle: files written here can be read by any numpy, and ``allow_pickle=False`` is
passed on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from memberlab._errors import DataValidationError, SchemaVersionError
from memberlab.bayes.beta import BetaState
from memberlab.bayes.probit import ProbitState

__all__ = ["SCHEMA_VERSION", "load_state", "save_state"]

SCHEMA_VERSION = 1


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in {".json", ".npz"} else p
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def save_state(
    state: ProbitState | BetaState, path: str | Path, *, meta: dict[str, Any] | None = None
) -> None:
    """Write ``<path>.json`` and ``<path>.npz``; ``meta`` must be JSON-serialisable."""
    jpath, npath = _paths(path)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(state, ProbitState):
        header: dict[str, Any] = {"kind": "probit", "noise": state.noise}
        arrays = {
            "mean": state.mean,
            "var": state.var,
            "prior_mean": state.prior_mean,
            "prior_var": state.prior_var,
        }
    elif isinstance(state, BetaState):
        header = {"kind": "beta", "prior_alpha": state.prior_alpha, "prior_beta": state.prior_beta}
        arrays = {"alpha": state.alpha, "beta": state.beta}
    else:
        raise TypeError(f"cannot save {type(state).__name__}.")
    header["schema_version"] = SCHEMA_VERSION
    header["meta"] = meta or {}
    np.savez(npath, **arrays)  # type: ignore[arg-type]  # numpy stub reads ** as allow_pickle
    jpath.write_text(json.dumps(header, indent=2, sort_keys=True))


def load_state(path: str | Path) -> tuple[ProbitState | BetaState, dict[str, Any]]:
    """Read a state written by :func:`save_state`; returns ``(state, meta)``."""
    jpath, npath = _paths(path)
    header = json.loads(jpath.read_text())
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{jpath} has schema_version {version!r}; this release reads {SCHEMA_VERSION}."
        )
    with np.load(npath, allow_pickle=False) as z:
        arrays = {k: np.array(z[k], dtype=np.float64) for k in z.files}
    kind = header.get("kind")
    meta = dict(header.get("meta", {}))
    if kind == "probit":
        return ProbitState(
            arrays["mean"],
            arrays["var"],
            arrays["prior_mean"],
            arrays["prior_var"],
            float(header["noise"]),
        ), meta
    if kind == "beta":
        return BetaState(
            arrays["alpha"],
            arrays["beta"],
            float(header["prior_alpha"]),
            float(header["prior_beta"]),
        ), meta
    raise DataValidationError(f"{jpath} holds an unknown state kind {kind!r}.")
