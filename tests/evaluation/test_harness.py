"""The one regret harness on a toy world whose every number is known.

Two-armed Bernoulli world (click rates 0.2 and 0.5); each impression's feedback is known
``delay`` rounds after it; the harness must hand every impression to the policy exactly
once, at the first end of a batch (its own or a later one) on or after its due round, in
impression order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab._typing import FloatArray, IntArray
from memberlab.evaluation.harness import Outcome, run
from memberlab.evaluation.regret import plot_regret, summarise

P = np.array([0.2, 0.5])


class ToyWorld:
    reward_names = ("clicks", "twice")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.starts: list[int] = []

    def adapt(self, policy: Any) -> Any:
        return policy

    def start(self, n_rounds: int, rng: np.random.Generator) -> None:
        self.starts.append(n_rounds)

    def requests(self, start: int, stop: int, rng: np.random.Generator) -> IntArray:
        return np.arange(start, stop)

    def expected(self, requests: IntArray, actions: IntArray) -> FloatArray:
        return np.stack([P[actions], 2 * P[actions]], axis=1)

    def best(self, requests: IntArray) -> FloatArray:
        return np.full(requests.shape[0], P.max())

    def realise(
        self, requests: IntArray, actions: IntArray, expected: FloatArray, rng: np.random.Generator
    ) -> Outcome:
        r = (rng.random(requests.shape[0]) < expected[:, 0]).astype(np.int64)
        return Outcome(r.astype(float), {"t": requests, "reward": r}, delay=self.delay)

    def is_optimal(self, action: IntArray) -> bool | None:
        return bool(action == 1)


class Fixed:
    """Always the same arm; records every update."""

    def __init__(self, arm: int) -> None:
        self.arm = arm
        self.name = f"arm {arm}"
        self.updates: list[tuple[int, IntArray]] = []

    def start(self, rng: np.random.Generator) -> None:
        self.updates = []

    def decide(self, requests: IntArray, rng: np.random.Generator) -> IntArray:
        return np.full(requests.shape[0], self.arm)

    def update(self, feedback: Mapping[str, Any], t: int) -> None:
        self.updates.append((t, feedback["t"].copy()))


@pytest.mark.parametrize(("delay", "batch"), [(0.0, 7), (12.5, 7), (30.0, 10), (0.0, 200)])
def test_feedback_once_in_order_at_first_batch_end_after_its_delay(
    delay: float, batch: int
) -> None:
    n = 100
    pol = Fixed(0)
    run(ToyWorld(delay), pol, n, batch=batch, rng=0)
    ends = [*range(batch, n, batch), n]
    delivered = np.concatenate([t for _, t in pol.updates]) if pol.updates else np.zeros(0)
    assert np.array_equal(delivered, np.arange(delivered.shape[0]))  # once each, in order
    for end, ts in pol.updates:
        assert end in ends
        assert np.all(ts + delay <= end)  # never early
        prev = max([e for e in ends if e < end], default=-1)
        # not held past a batch end by which it was served and due
        assert np.all((ts + delay > prev) | (ts >= prev))
    # what is still pending at the end is exactly what was not due by round n
    assert delivered.shape[0] == int(np.sum(np.arange(n) + delay <= n))


def test_regret_columns_and_checkpoints() -> None:
    n = 1000
    world = ToyWorld(3.0)
    worst = run(world, Fixed(0), n, batch=64, n_checkpoints=10, rng=1)
    best = run(world, Fixed(1), n, batch=64, n_checkpoints=10, rng=1)
    assert world.starts == [n, n]
    np.testing.assert_array_equal(worst.rounds, np.arange(100, 1001, 100))
    np.testing.assert_allclose(worst.cumulative_regret, 0.3 * worst.rounds, rtol=1e-12)
    assert best.total == 0.0 and best.name == "arm 1"
    assert list(worst.expected) == ["clicks", "twice"]
    np.testing.assert_array_equal(worst.expected["clicks"], np.full(n, 0.2))
    assert worst.last_quarter() == pytest.approx((0.2, 0.4))
    # same uniforms for both (the policies draw nothing): arm 1 clicks whenever arm 0 does
    assert 0 < worst.clicks < best.clicks < n
    per_batch = run(world, Fixed(0), n, batch=64, n_checkpoints=None, rng=1)
    np.testing.assert_array_equal(per_batch.rounds, [*range(64, n, 64), n])
    assert per_batch.final_choice is None and per_batch.at_optimum is None


def test_final_choice_and_determinism(tmp_path: Any) -> None:
    world = ToyWorld(0.0)
    a = run(world, Fixed(1), 500, batch=50, final_window=120, rng=np.random.default_rng(3))
    b = run(world, Fixed(1), 500, batch=50, final_window=120, rng=3)
    assert a.final_choice is not None and int(a.final_choice) == 1 and a.at_optimum is True
    assert a.clicks == b.clicks
    np.testing.assert_array_equal(a.cumulative_regret, b.cumulative_regret)
    s = summarise({"a": [a, b]})["a"]
    assert s.n_runs == 2 and s.se == 0.0
    assert plot_regret({"a": [a, b]}, tmp_path / "r.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_rounds": 0}, "n_rounds == 0"),
        ({"batch": 0}, "batch == 0"),
        ({"n_checkpoints": 0}, "n_checkpoints == 0"),
        ({"final_window": -1}, "final_window == -1"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, int], match: str) -> None:
    args: dict[str, Any] = {"n_rounds": 10, **kwargs}
    with pytest.raises(DataValidationError, match=match):
        run(ToyWorld(0.0), Fixed(0), **args)


def test_callout_world_refuses_a_run_longer_than_its_schedule() -> None:
    from memberlab.callouts.policies import UniformPolicy
    from memberlab.callouts.simulator import CalloutWorld

    world = CalloutWorld(n_rounds=300, rng=0)
    with pytest.raises(DataValidationError, match="n_rounds == 301, must be <= 300"):
        run(world, UniformPolicy(), 301)


def test_value_world_regret_is_against_the_best_callout_of_the_state() -> None:
    """Seed 2, 400 shoppers: the oracle's regret is 0 and the random policy's equals the
    value it gives up per impression, summed."""
    from memberlab.value import OraclePolicy, RandomPolicy, ValueWorld, run_value_world

    world = ValueWorld(rng=0)
    oracle = run_value_world(world, OraclePolicy(world), n_rounds=400, batch=100, rng=2)
    rand = run_value_world(world, RandomPolicy(world), n_rounds=400, batch=100, rng=2)
    assert oracle.total == 0.0
    gap = oracle.expected["value"] - rand.expected["value"]
    assert np.all(gap >= 0) and rand.total == pytest.approx(gap.sum(), rel=1e-12)
    assert rand.rounds[-1] == 400 and rand.name == "RandomPolicy"
