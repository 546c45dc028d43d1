"""The three simulators' traces for fixed seeds, checked against recorded reference values.

Provenance: ``harness_reference.json`` was written by ``_record()`` below at commit
51c1863, before the simulators shared one harness, when each kept its own run loop
(callouts ``run_policy``, layouts ``run_regret``, value ``run_value_world``)::

    PYTHONPATH=src python tests/evaluation/test_harness_reference.py --record

Every case is small (at most 3,000 rounds) and has a partial last batch, delayed feedback
(callouts: a 300-round window) and, for callouts, catalog churn and drift, so the run
loop's batching, feedback ledger, checkpoints and random-number order are all exercised.
The learners (attribute TS, the layout probit, the click recommender) are in the record
too: a change to their numerics changes these numbers and needs a new record, stated in
its commit.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REFERENCE = Path(__file__).with_name("harness_reference.json")
VALUE_CROSSES = [("delivery", "pitch"), ("status", "pitch")]
CALLOUT_POLICIES = ("uniform", "epsilon", "beta", "oracle", "fixed", "deconvolved")
LAYOUT_POLICIES = ("mvt2", "mvt1", "arm-per-layout", "per-slot")
VALUE_POLICIES = ("random", "oracle", "click")


def _callouts(name: str, run: Callable[..., Any]) -> dict[str, Any]:
    """3,000 rounds, items living 800 rounds, drift every 700, batches of 400."""
    from memberlab.callouts.policies import (
        AttributeTSPolicy,
        BetaBernoulliPolicy,
        EpsilonGreedyPolicy,
        OraclePolicy,
        UniformPolicy,
    )
    from memberlab.callouts.simulator import CalloutWorld

    # a fresh world per policy: drift moves the world's truth during a run
    world = CalloutWorld(
        n_rounds=3000, item_lifetime=800, drift_sd=0.02, drift_every=700, window=300, rng=4
    )
    policy = {
        "uniform": UniformPolicy,
        "epsilon": EpsilonGreedyPolicy,
        "beta": BetaBernoulliPolicy,
        "oracle": lambda: OraclePolicy(world),
        "fixed": AttributeTSPolicy,
        "deconvolved": lambda: AttributeTSPolicy(meta_prior="deconvolved", refit_at=(1000,)),
    }[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = run(world, policy)
    return {
        "rounds": tr.rounds.tolist(),
        "cumulative_regret": tr.cumulative_regret.tolist(),
        "clicks": tr.clicks,
    }


def _layouts(name: str, run: Callable[..., Any]) -> dict[str, Any]:
    """Basin model 4 slots x 3 variants (seed 1), 3,000 rounds, batches of 400."""
    from memberlab.layouts.regret import make_learner
    from memberlab.layouts.simulate import basin_model

    sim = basin_model(n_slots=4, n_variants=3, rng=1)
    tr = run(sim, make_learner(name, sim.space, rng=11))
    return {
        "rounds": tr.rounds.tolist(),
        "cumulative_regret": tr.cumulative_regret.tolist(),
        "final_choice": tr.final_choice.tolist(),
        "at_optimum": tr.at_optimum,
    }


def _value(name: str, world: Any, run: Callable[..., Any]) -> dict[str, Any]:
    """600 rounds of ``ValueWorld(rng=0)``, feedback in batches of 150, stream seed 3."""
    from memberlab.value import ClickObjective, OraclePolicy, RandomPolicy

    policy = {
        "random": lambda: RandomPolicy(world),
        "oracle": lambda: OraclePolicy(world),
        "click": lambda: ClickObjective(world, crosses=VALUE_CROSSES),
    }[name]()
    tr = run(world, policy)
    value, clicks = _value_columns(tr)
    return {"value": value.tolist(), "clicks": clicks.tolist(), "last_quarter": tr.last_quarter()}


def _value_columns(tr: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(tr, "expected"):  # one trace type with named per-round columns
        return tr.expected["value"], tr.expected["clicks"]
    return tr.value, tr.clicks  # the value world's own trace, before one harness


def _old_entry_points() -> dict[str, Callable[..., Any]]:
    """The simulators' public run functions, called as the docs and CLIs call them."""
    from memberlab.callouts.simulator import run_policy
    from memberlab.layouts.regret import run_regret
    from memberlab.value import run_value_world

    return {
        "callouts": lambda w, p: run_policy(w, p, batch_size=400, n_checkpoints=20, rng=7),
        "layouts": lambda s, p: run_regret(s, p, rounds=3000, batch=400, final_window=1000, rng=12),
        "value": lambda w, p: run_value_world(w, p, n_rounds=600, batch=150, rng=3),
    }


def _harness() -> dict[str, Callable[..., Any]]:
    """The same runs through :func:`memberlab.evaluation.harness.run` itself."""
    from memberlab.evaluation.harness import run

    return {
        "callouts": lambda w, p: run(w, p, w.n_rounds, batch=400, n_checkpoints=20, rng=7),
        "layouts": lambda s, p: run(
            s, p, 3000, batch=400, n_checkpoints=None, final_window=1000, rng=12
        ),
        "value": lambda w, p: run(w, p, 600, batch=150, rng=3),
    }


ENTRY = {"entry point": _old_entry_points, "harness": _harness}


def _record() -> dict[str, Any]:
    from memberlab.value import ValueWorld

    run = _old_entry_points()
    world = ValueWorld(rng=0)
    return {
        "provenance": "tests/evaluation/test_harness_reference.py --record at commit 51c1863",
        "callouts": {n: _callouts(n, run["callouts"]) for n in CALLOUT_POLICIES},
        "layouts": {n: _layouts(n, run["layouts"]) for n in LAYOUT_POLICIES},
        "value": {n: _value(n, world, run["value"]) for n in VALUE_POLICIES},
    }


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(REFERENCE.read_text())
    return out


@pytest.fixture(scope="module")
def value_world() -> Any:
    from memberlab.value import ValueWorld

    return ValueWorld(rng=0)


def _same(got: dict[str, Any], want: dict[str, Any], *, rtol: float = 0.0) -> None:
    assert set(got) == set(want)
    for key, w in want.items():
        if isinstance(w, list) and w and isinstance(w[0], float):
            np.testing.assert_allclose(got[key], w, rtol=rtol, atol=0.0, err_msg=key)
        elif isinstance(w, float):
            assert got[key] == pytest.approx(w, rel=rtol, abs=0.0), key
        else:
            assert got[key] == w, key


@pytest.mark.parametrize("via", list(ENTRY))
@pytest.mark.parametrize("name", CALLOUT_POLICIES)
def test_callouts_run_policy_matches_reference(
    name: str, via: str, reference: dict[str, Any]
) -> None:
    _same(_callouts(name, ENTRY[via]()["callouts"]), reference["callouts"][name])


@pytest.mark.parametrize("via", list(ENTRY))
@pytest.mark.parametrize("name", LAYOUT_POLICIES)
def test_layouts_run_regret_matches_reference(
    name: str, via: str, reference: dict[str, Any]
) -> None:
    """Layouts served and the final layout are exact; cumulative regret to 1e-12: the old
    loop added a batch's regret with ``np.sum`` (pairwise), the one harness with
    ``np.cumsum`` (sequential, as callouts always did), which differ in the last bits."""
    got = _layouts(name, ENTRY[via]()["layouts"])
    _same(got, reference["layouts"][name], rtol=1e-12)


@pytest.mark.parametrize("via", list(ENTRY))
@pytest.mark.parametrize("name", VALUE_POLICIES)
def test_value_run_value_world_matches_reference(
    name: str, via: str, reference: dict[str, Any], value_world: Any
) -> None:
    """Callouts served are exact; values to 1e-12: the world's true member values come
    from linear solves whose last bits depend on the kernel OpenBLAS picks for the CPU
    (4e-15 apart on a second AMD EPYC machine, the served callouts identical)."""
    got = _value(name, value_world, ENTRY[via]()["value"])
    _same(got, reference["value"][name], rtol=1e-12)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: test_harness_reference.py --record")
    REFERENCE.write_text(json.dumps(_record(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
