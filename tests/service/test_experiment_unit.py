"""The holdout's parts without HTTP: the sticky hash, the baselines' propensities (checked
against their empirical frequencies and against enumeration) and the report helpers.

Seeds and tolerances: 20,000 unit ids for the hash (the holdout share within 4 s.d. of
0.3); 20,000 baseline draws per check (each frequency within 4 s.d. of its propensity).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from memberlab import DataValidationError, UnknownItemError
from memberlab.callouts import CalloutRecommender, Catalog
from memberlab.evaluation.experiment import first_arm, holdout_report, per_decision, readout
from memberlab.layouts import LayoutPolicy, LayoutSpace
from memberlab.service._experiment import (
    Experiment,
    allowed_layouts,
    callouts_baseline,
    layouts_baseline,
    unit_draw,
)


def test_unit_draw_is_sticky_and_uniform() -> None:
    exp = Experiment(0.3, "uniform", "salt")
    arms = [exp.assign(f"u{j}").arm for j in range(20_000)]
    share = arms.count("holdout") / len(arms)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(arms))
    assert [exp.assign(f"u{j}").arm for j in range(200)] == arms[:200]  # sticky
    assert Experiment(0.3, "uniform", "other").assign("u1").arm in ("holdout", "policy")
    other = [Experiment(0.3, "uniform", "other").assign(f"u{j}").arm for j in range(2000)]
    assert other != arms[:2000]  # the salt matters
    assert 0 <= unit_draw("s", "u") < 1
    a = exp.assign(None)
    assert a.unit == "request" and a.logged == a.arm
    off = Experiment().assign("u1")
    assert off.arm == "policy" and off.logged is None and off.unit == "unit"
    with pytest.raises(DataValidationError, match="holdout_fraction"):
        Experiment(1.0, "uniform", "s")
    with pytest.raises(DataValidationError, match="salt"):
        Experiment(0.2, "uniform", None)


def _rec() -> CalloutRecommender:
    cat = Catalog()
    for i in "abcde":
        cat.add(i, {"benefit": i})
    cat.retire("e")
    return CalloutRecommender(catalog=cat)


def test_callouts_baseline_propensities() -> None:
    rec = _rec()
    n_draws, k = 20_000, 2
    slots: Counter[tuple[int, str]] = Counter()
    for seed in range(n_draws):
        d = callouts_baseline(rec, None, k, seed, "uniform")
        assert [s.propensity for s in d.items] == [0.25, 0.25]
        assert all(s.set_propensity == 0.5 for s in d.items)
        for r, s in enumerate(d.items):
            slots[(r, s.item_id)] += 1
    for r in range(k):
        for item in "abcd":
            f = slots[(r, item)] / n_draws
            assert abs(f - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n_draws), (r, item, f)
    same = callouts_baseline(rec, None, 2, 7, "uniform")
    assert same.item_ids == callouts_baseline(rec, None, 2, 7, "uniform").item_ids  # replay
    first = callouts_baseline(rec, ["c", "a", "b"], 2, 1, "first")
    assert first.item_ids == ["c", "a"] and first.propensities == [1.0, 1.0]
    with pytest.raises(UnknownItemError):
        callouts_baseline(rec, ["zz"], 1, 0, "uniform")
    with pytest.raises(DataValidationError, match="retired"):
        callouts_baseline(rec, ["e"], 1, 0, "uniform")
    with pytest.raises(DataValidationError, match="repeat"):
        callouts_baseline(rec, ["a", "a"], 1, 0, "uniform")
    with pytest.raises(DataValidationError, match="k =="):
        callouts_baseline(rec, ["a"], 2, 0, "uniform")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_allowed_layouts_counts_like_enumeration(seed: int) -> None:
    g = np.random.default_rng(seed)
    slots = {f"s{d}": [f"v{j}" for j in range(int(g.integers(2, 5)))] for d in range(4)}
    cons = []
    for _ in range(int(g.integers(1, 7))):
        picked = g.choice(4, size=int(g.integers(1, 3)), replace=False)
        cons.append({f"s{d}": str(g.choice(slots[f"s{d}"])) for d in picked})
    space = LayoutSpace(slots, constraints=cons)
    allowed = sum(not v for v in space.violations(space.all_layouts()))
    assert allowed_layouts(space) == allowed


def test_layouts_baseline_is_uniform_over_allowed() -> None:
    space = {"slots": {"h": ["h1", "h2"], "i": ["i1", "i2", "i3"]},
             "constraints": [{"h": "h1", "i": "i3"}]}  # fmt: skip
    pol = LayoutPolicy(space)
    n_draws = 20_000
    seen: Counter[tuple[str, str]] = Counter()
    for seed in range(n_draws):
        d = layouts_baseline(pol, seed, "uniform")
        assert d.propensity == pytest.approx(1 / 5)
        seen[(d.layout["h"], d.layout["i"])] += 1
    assert ("h1", "i3") not in seen and len(seen) == 5
    for f in seen.values():
        assert abs(f / n_draws - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n_draws)
    first = layouts_baseline(pol, 0, "first")
    assert first.layout == {"h": "h1", "i": "i1"} and first.propensity == 1.0
    banned = LayoutPolicy({**space, "constraints": [{"h": "h1", "i": "i1"}]})
    assert layouts_baseline(banned, 0, "first").layout == {"h": "h1", "i": "i2"}


def _frame(n_units: int = 400, seed: int = 0) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    arm = np.where(g.random(n_units) < 0.3, "holdout", "policy")
    n = 1 + g.poisson(3, n_units)
    u = np.repeat(np.arange(n_units), n)
    p = 0.1 + 0.05 * (arm[u] == "policy")
    return pd.DataFrame({
        "decision_id": [f"d{j}" for j in range(u.size)],
        "ts": np.sort(g.uniform(0, 10 * 86_400, u.size)),
        "unit_id": u.astype(str),
        "assignment": arm[u],
        "reward": (g.random(u.size) < p).astype(float),
    })  # fmt: skip


def test_report_helpers() -> None:
    frame = _frame()
    rep = holdout_report(frame, holdout_fraction=0.3, every=86_400)
    direct = readout(frame, holdout_fraction=0.3).to_dict()
    assert rep["ready"] and rep["lift"] == direct["lift"] and rep["arms"] == direct["arms"]
    assert rep["srm"]["units_in_both_arms"] == 0 and not rep["srm"]["mismatch"]
    series = rep["series"]
    assert len(series) == 10  # one point per day
    assert series[-1]["absolute"] == pytest.approx(direct["lift"]["absolute"])
    assert series[-1]["cs_lower"] == pytest.approx(direct["confidence_sequence"]["lower"])
    assert [p["decisions"] for p in series] == sorted(p["decisions"] for p in series)
    # a broken split: a fifth of the units switch arm half-way
    broken = frame.copy()
    late = broken.index > len(broken) // 2
    flip = broken["unit_id"].astype(int) % 5 == 0
    broken.loc[late & flip, "assignment"] = broken.loc[late & flip, "assignment"].map(
        {"holdout": "policy", "policy": "holdout"}
    )
    fixed, mixed = first_arm(broken)
    assert mixed > 0 and fixed.groupby("unit_id")["assignment"].nunique().max() == 1
    out = holdout_report(broken, holdout_fraction=0.3)
    assert out["srm"]["units_in_both_arms"] == mixed and out["srm"]["mismatch"]
    # not enough units yet
    early = holdout_report(frame.head(3), holdout_fraction=0.3)
    assert not early["ready"] and "need at least 2" in early["reason"]


def test_per_decision_from_export_rows() -> None:
    rows = pd.DataFrame({
        "decision_id": ["d1", "d1", "d2", "d2", "d3", "d4"],
        "ts": [1.0, 1.0, 2.0, 2.0, 3.0, 4.0],
        "unit_id": ["u1", "u1", None, None, "u2", "u3"],
        "assignment": ["policy", "policy", "holdout", "holdout", "holdout", None],
        "reward": [1.0, 1.0, 0.0, np.nan, 1.0, 1.0],
        "status": ["closed", "closed", "closed", "pending", "closed", "closed"],
    })  # fmt: skip
    out, pending = per_decision(rows)
    assert list(out["decision_id"]) == ["d1", "d3"] and pending == 1  # d4 has no arm
    assert list(out["reward"]) == [2.0, 1.0]
    with pytest.raises(DataValidationError, match="status"):
        per_decision(rows.drop(columns="status"))
