"""Callout simulator and policies: ground truth and a short regret run (issue 2)."""

from __future__ import annotations

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.callouts.policies import (
    AttributeTSPolicy,
    BetaBernoulliPolicy,
    EpsilonGreedyPolicy,
    OraclePolicy,
    UniformPolicy,
)
from memberlab.callouts.simulator import CalloutWorld, run_policy


def test_world_rates_and_cold_start_schedule() -> None:
    w = CalloutWorld(n_rounds=20_000, item_lifetime=5_000, rng=0)
    assert w.probs.mean() == pytest.approx(0.03, abs=1e-6)
    assert w.probs.min() > 1e-4 and w.probs.max() < 0.5
    adds = [e for e in w.events() if e[1] == "add"]
    retires = [e for e in w.events() if e[1] == "retire"]
    assert len(adds) > 50 and len(retires) == len(adds) - 50
    live = 0
    for _, kind, _ in w.events():  # always exactly n_active live after each round's changes
        live += 1 if kind == "add" else -1
    assert live == 50
    with pytest.raises(DataValidationError, match="base_rate"):
        CalloutWorld(n_rounds=10, base_rate=0.9)


def test_short_run_orders_policies_sensibly() -> None:
    w = CalloutWorld(n_rounds=6_000, item_lifetime=6_000, rng=1)
    res = {}
    for p in (
        UniformPolicy(),
        EpsilonGreedyPolicy(),
        BetaBernoulliPolicy(),
        AttributeTSPolicy(),
        AttributeTSPolicy(meta_prior="deconvolved", refit_at=(2_000,)),
        OraclePolicy(w),
    ):
        tr = run_policy(w, p, batch_size=500, rng=2)
        assert np.all(np.diff(tr.cumulative_regret) >= -1e-9)
        res[p.name] = tr.cumulative_regret[-1]
    assert res["oracle"] == 0.0
    assert res["attribute TS, fixed N(0,1) prior"] < res["uniform random"]
    assert res["attribute TS, deconvolved meta-prior"] < res["uniform random"]


def test_drift_changes_truth() -> None:
    w = CalloutWorld(n_rounds=2_000, drift_sd=0.05, drift_every=500, rng=3)
    p0 = w.probs.copy()
    run_policy(w, UniformPolicy(), rng=0)
    assert not np.allclose(p0, w.probs)


def test_every_run_on_a_drifting_world_starts_from_the_same_truth() -> None:
    """Seed 3, drift every 500 rounds: the CLI and the benchmark run every policy of a
    seed on one world, so a run must not start from the truth the previous run drifted."""
    w = CalloutWorld(n_rounds=2_000, drift_sd=0.05, drift_every=500, rng=3)
    p0 = w.probs.copy()
    first = run_policy(w, UniformPolicy(), rng=0)
    again = run_policy(w, UniformPolicy(), rng=0)
    np.testing.assert_array_equal(first.cumulative_regret, again.cumulative_regret)
    assert first.clicks == again.clicks
    oracle = run_policy(w, OraclePolicy(w), rng=0)
    assert oracle.total == 0.0
    assert not np.allclose(p0, w.probs)  # the run itself still drifts
