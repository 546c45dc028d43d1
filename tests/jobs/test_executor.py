"""The executor interface: order, shared data, seeds, progress, failures, on every backend."""

from __future__ import annotations

import jobtasks
import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.jobs import Executor, TaskFailedError, get_executor, task_seeds


def test_map_keeps_task_order_and_reports_progress(executor: Executor) -> None:
    seen: list[tuple[int, int]] = []
    out = executor.map(jobtasks.square, range(11), progress=lambda d, t: seen.append((d, t)))
    assert out == [i * i for i in range(11)]
    assert seen[0] == (0, 11) and seen[-1] == (11, 11)
    assert [d for d, _ in seen] == list(range(12))
    assert executor.map(jobtasks.square, []) == []


def test_shared_payload_reaches_every_task(executor: Executor) -> None:
    assert executor.map(jobtasks.offset, [1, 2, 3], shared={"base": 100}) == [101, 102, 103]
    # a second call with other shared data is not served from a stale cache
    assert executor.map(jobtasks.offset, [1], shared={"base": 5}) == [6]


def test_seeded_tasks_are_bit_identical_on_every_backend(executor: Executor) -> None:
    serial = [jobtasks.draws(s) for s in task_seeds(42, 6)]
    got = executor.map(jobtasks.draws, task_seeds(42, 6))
    for a, b in zip(serial, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_task_seeds_match_rng_spawn() -> None:
    from memberlab._rng import spawn

    a = [np.random.default_rng(s).random(3) for s in task_seeds(7, 4)]
    b = [g.random(3) for g in spawn(7, 4)]
    np.testing.assert_array_equal(np.array(a), np.array(b))


def test_a_failing_task_fails_the_job_naming_it(executor: Executor) -> None:
    with pytest.raises(TaskFailedError, match=r"task 3 of 8 \(3\) failed: ValueError: x == 3") as e:
        executor.map(jobtasks.fail_on_three, range(8))
    assert e.value.task_index == 3
    assert isinstance(e.value, RuntimeError)


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_a_killed_worker_fails_the_job_naming_the_task(
    backend: str, request: pytest.FixtureRequest
) -> None:
    ex: Executor = request.getfixturevalue(f"{backend}_executor")
    with pytest.raises(TaskFailedError, match=r"task 3 of 6 \(3\) failed") as e:
        ex.map(jobtasks.die_on_three, range(6))
    assert e.value.task_index == 3
    assert "died" in str(e.value)
    if backend == "process":
        # the exit code is read from the pool's process handles when it still has them
        assert "exit code 7" in str(e.value) or "unknown exit code" in str(e.value)
        # the broken pool is replaced: the next job runs on fresh workers
        assert ex.map(jobtasks.square, [2, 3]) == [4, 9]


def test_get_executor_checks_its_arguments() -> None:
    with pytest.raises(DataValidationError, match="executor == 'spark'"):
        get_executor("spark")
    with pytest.raises(DataValidationError, match="workers == 0"):
        get_executor("processes", workers=0)
    with pytest.raises(DataValidationError, match="ray_address"):
        get_executor("processes", ray_address="10.0.0.1:6379")
    assert get_executor(None).name == "serial"
