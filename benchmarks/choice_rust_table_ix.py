"""Rust (1987) Table IX: which data convention gives the printed log-likelihoods.

Table IX (90 cells of 5,000 miles) prints, at beta = 0.9999, log-likelihoods -2708.366
(groups 1-3), -3304.155 (group 4) and -6055.25 (groups 1-4). This script fits each
column under the candidate conventions for turning Rust's odometer readings into
(state, decision, increment) triples and prints the log-likelihood, RC and theta11 each
gives, so the table in docs/choice_rust.md can be regenerated::

    python benchmarks/choice_rust_table_ix.py

Conventions varied (one at a time, from the default of :func:`rust_states`):

- ``cell``: Rust's 1-based ``ceil(m / 5000)`` (state ``ceil - 1``) or ruspy's
  ``floor(m / 5000)``;
- ``first``: the first month of each bus dropped (it has no increment into it), or kept
  with the increment counted from cell 0;
- ``replacement``: the increment in a replacement month counted ``ceil`` (Rust's landing
  one cell higher), ``floor`` from cell 0, or the month left out of the transition
  likelihood;
- ``last``: the last month of each bus kept with decision 0, or dropped;
- ``theta3``: the transition likelihood pooled over groups, or per group (each group its
  own increment frequencies; the choice part as pooled).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_banner, single_thread_blas

single_thread_blas()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from memberlab.choice import RustData, fit_rust, load_rust_bus, rust_states  # noqa: E402

PRINTED = {(1, 2, 3): -2708.366, (4,): -3304.155, (1, 2, 3, 4): -6055.25}


def triples(
    frame: pd.DataFrame,
    groups: tuple[int, ...],
    *,
    cell: str = "ceil",
    first: str = "drop",
    replacement: str = "ceil",
    last: str = "zero",
) -> tuple[RustData, np.ndarray, np.ndarray]:
    """(state, decision, increment) under one convention, with group and a keep mask.

    Returns the data, each observation's group, and which observations enter the
    transition likelihood.
    """
    df = frame[frame["group"].isin(groups)].sort_values(["bus_id", "period"])
    m = df["mileage_since_replacement"].to_numpy(dtype=float) / 5000.0
    bus = df["bus_id"].to_numpy()
    rep = df["replaced"].to_numpy().astype(np.int64)
    grp = df["group"].to_numpy()
    if cell == "ceil":
        c = np.ceil(m).astype(np.int64)
        state = np.maximum(c - 1, 0)
    else:
        c = np.floor(m).astype(np.int64)
        state = c
    after = {"ceil": np.ceil(m), "floor": np.floor(m), "drop": np.ceil(m)}[replacement]
    first_of_bus = np.ones(len(bus), dtype=bool)
    first_of_bus[1:] = bus[1:] != bus[:-1]
    last_of_bus = np.ones(len(bus), dtype=bool)
    last_of_bus[:-1] = bus[:-1] != bus[1:]
    next_rep = np.zeros(len(bus), dtype=np.int64)
    next_rep[:-1] = np.where(last_of_bus[:-1], 0, rep[1:])
    prev = np.zeros(len(bus), dtype=np.int64)
    prev[1:] = c[:-1]
    prev[first_of_bus] = 0  # "from cell 0" for a bus's first month
    inc = np.where(rep == 1, after.astype(np.int64), c - prev)
    keep = np.ones(len(bus), dtype=bool) if first == "from0" else ~first_of_bus
    if last == "drop":
        keep &= ~last_of_bus
    in_trans = np.ones(len(bus), dtype=bool)
    if replacement == "drop":
        in_trans &= rep == 0
    data = RustData(state[keep], next_rep[keep], inc[keep], 90, tuple(groups))
    return data, grp[keep], in_trans[keep]


def fit(data: RustData, in_trans: np.ndarray) -> tuple[float, float, float]:
    """Full log-likelihood at beta = 0.9999 (transitions only over ``in_trans``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_rust(data, discount=0.9999)
    if in_trans.all():
        return res.loglik, res.rc, res.theta11
    # leave months out of the transition part: refit the transition part on the rest
    inc = data.increments[in_trans]
    p = np.bincount(inc, minlength=len(res.theta3)) / len(inc)
    with np.errstate(divide="ignore"):
        ll_t = float(np.sum(np.log(p[inc])))
    return res.loglik_choice + ll_t, res.rc, res.theta11


def per_group_transition(data: RustData, grp: np.ndarray) -> float:
    total = 0.0
    for g in np.unique(grp):
        inc = data.increments[grp == g]
        p = np.bincount(inc) / len(inc)
        total += float(np.sum(np.log(p[inc])))
    return total


def main() -> int:
    print_banner("Rust (1987) Table IX conventions (90 cells, beta = 0.9999)")
    frame = load_rust_bus()
    # the default reproduces rust_states exactly
    for g in PRINTED:
        a, _, _ = triples(frame, g)
        b = rust_states(frame, groups=g, bins=90)
        assert np.array_equal(a.states, b.states) and np.array_equal(a.increments, b.increments)
    variants = [
        ("default: ceil cell, first month dropped, replacement ceil, last month d=0", {}),
        ("ruspy floor cell", {"cell": "floor"}),
        ("first month of each bus kept, increment from cell 0", {"first": "from0"}),
        ("replacement-month increment floor (from cell 0)", {"replacement": "floor"}),
        ("replacement months left out of the transition part", {"replacement": "drop"}),
        ("last month of each bus dropped", {"last": "drop"}),
        ("floor cell and replacement floor", {"cell": "floor", "replacement": "floor"}),
    ]
    print()
    names = ["groups 1-3", "group 4", "groups 1-4"]
    head = f"| convention | {' | '.join(names)} |"
    print(head)
    print("|" + " --- |" * (1 + len(PRINTED)))
    print(f"| printed (Table IX) | {' | '.join(f'{v:.3f}' for v in PRINTED.values())} |")
    for name, kw in variants:
        cells = []
        for g in PRINTED:
            data, _, in_trans = triples(frame, g, **kw)
            ll, rc, th = fit(data, in_trans)
            cells.append(f"{ll:.3f} (RC {rc:.4f}, theta11 {th:.4f}, N {len(data.states)})")
        print(f"| {name} | {' | '.join(cells)} |")
    cells = []
    for g in PRINTED:
        data, grp, _ = triples(frame, g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit_rust(data, discount=0.9999)
        cells.append(f"{res.loglik_choice + per_group_transition(data, grp):.3f}")
    print(f"| theta3 per group (choice part pooled) | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
