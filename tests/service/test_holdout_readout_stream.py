"""The store's holdout readout streams its decisions into per-unit sums (SQLite and
PostgreSQL), and gives the numbers of the in-memory readout.

The store (seed 0): 900 decisions of 120 named units over three days, 10% without a
unit id, two units seen in both arms (a broken split), decisions with one or two served
items, 40 left pending. The oracle is the frame-based readout written independently of
the stream: every closed decision in one DataFrame, each unit put in the arm of its
first decision (:func:`first_arm`), and :func:`readout` on it and on each prefix of the
series. The streamed report (batches of 7 decisions, so every path through a batch
boundary runs) must equal it to 1e-12, and equal :func:`holdout_report` on the frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from memberlab.evaluation.experiment import first_arm, holdout_report, readout
from memberlab.service._experiment import experiment_frame, experiment_report
from memberlab.store import DecisionRecord, Store

T0 = 1_767_225_600.0


def _fill(store: Store, seed: int = 0) -> None:
    g = np.random.default_rng(seed)
    for item in "abc":
        store.upsert_item(item, {"benefit": item})
    arm_of = {f"u{j}": ("holdout" if g.random() < 0.3 else "policy") for j in range(120)}
    closed: list[tuple[str, str, float]] = []
    for k in range(900):
        unit: str | None = f"u{int(g.integers(120))}" if g.random() >= 0.1 else None
        arm = arm_of[unit] if unit else ("holdout" if g.random() < 0.3 else "policy")
        if unit in ("u1", "u2") and k % 3 == 0:  # a broken split: these units switch arm
            arm = "policy" if arm == "holdout" else "holdout"
        served = ["a", "b"] if k % 4 == 0 else [str(g.choice(list("abc")))]
        did = f"d{k:04d}"
        rec = DecisionRecord(
            did, "callouts", "", {"page": "home"}, served, 1, k, T0 + 290.0 * k, True,
            unit_id=unit, assignment=arm,
        )  # type: ignore[arg-type]  # fmt: skip
        store.log_decision(rec, [(i, 0.5) for i in served], window=60)
        if k % 22 == 5:
            continue  # left pending
        p = 0.12 + 0.05 * (arm == "policy")
        closed += [(did, i, float(g.random() < p)) for i in served]
    store.publish("callouts", b"x", base_version=0, closed=closed)


def _oracle(store: Store, **kw: Any) -> dict[str, Any]:
    frame, pending = experiment_frame(store)
    fixed, mixed = first_arm(frame)
    full = readout(fixed, **kw).to_dict()
    return {"frame": frame, "fixed": fixed, "mixed": mixed, "pending": pending, **full}


def _close(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15, nan_ok=True)
    else:
        assert a == b


def test_streamed_readout_equals_the_in_memory_one(database_url: str) -> None:
    store = Store(database_url)
    try:
        _fill(store)
        cov = {f"u{j}": float(j % 7) for j in range(0, 120, 2)}
        kw: dict[str, Any] = {"holdout_fraction": 0.3, "level": 0.9, "cs_tuning_units": 500.0}
        out = experiment_report(store, every=86_400 / 4, covariates=cov, batch_size=7, **kw)
        want = _oracle(store, covariates=cov, **kw)
    finally:
        store.close()
    assert out["ready"] and out["decisions_pending"] == want["pending"] > 0
    for key in ("arms", "lift", "confidence_sequence", "cuped"):
        _close(out[key], want[key])
    srm = dict(out["srm"])
    assert srm.pop("units_in_both_arms") == want["mixed"] == 2
    assert srm.pop("mismatch") is True  # the broken split
    want_srm = {k: v for k, v in want["srm"].items() if k != "mismatch"}
    _close(srm, want_srm)
    # the series: the readout of every prefix, without CUPED
    fixed = want["fixed"]
    series = out["series"]
    assert len(series) == 13  # 3 days and 3 hours in quarter days
    for j, point in enumerate(series):
        last = j == len(series) - 1
        part = fixed if last else fixed[fixed["ts"] < point["until"]]
        r = readout(part, **kw)
        assert point["decisions"] == len(part)
        assert point["units"] == {a: r.arms[a]["units"] for a in ("holdout", "policy")}
        _close(
            [point["absolute"], point["lower"], point["upper"], point["cs_lower"]],
            [r.lift["absolute"], r.lift["lower"], r.lift["upper"], r.confidence_sequence["lower"]],
        )
        assert point["srm_p_value"] == pytest.approx(r.srm["p_value"], rel=1e-12)
    # and the frame's own report: the same JSON
    from_frame = holdout_report(want["frame"], every=86_400 / 4, covariates=cov,
                                pending=want["pending"], **kw)  # fmt: skip
    _close(from_frame, out)


def test_streamed_readout_not_ready_counts(database_url: str) -> None:
    store = Store(database_url)
    try:
        for item in "ab":
            store.upsert_item(item, {"benefit": item})
        for k, (unit, arm) in enumerate([("u1", "policy"), ("u2", "policy"), ("u1", "policy"),
                                         (None, "holdout")]):  # fmt: skip
            rec = DecisionRecord(f"d{k}", "callouts", "", {}, ["a"], 1, k, T0 + k, True,
                                 unit_id=unit, assignment=arm)  # type: ignore[arg-type]  # fmt: skip
            store.log_decision(rec, [("a", 0.5)], window=60)
        store.publish("callouts", b"x", base_version=0,
                      closed=[(f"d{k}", "a", 1.0) for k in range(4)])  # fmt: skip
        out = experiment_report(store, batch_size=2)
    finally:
        store.close()
    assert out["ready"] is False and "need at least 2" in out["reason"]
    assert out["arms"] == {"holdout": {"units": 1, "decisions": 1},
                           "policy": {"units": 2, "decisions": 3}}  # fmt: skip
