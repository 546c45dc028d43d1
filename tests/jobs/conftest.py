"""Executors for the job tests: serial, two local processes, a local Ray with two CPUs.

One process pool and one Ray instance per test session (Ray takes ~5 s to start). Ray
is part of the ``dev`` extra, so CI runs the Ray cases; without it they skip, unless
``MEMBERLAB_REQUIRE_RAY=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from memberlab.jobs import Executor, ProcessExecutor, RayExecutor, SerialExecutor

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


@pytest.fixture(scope="session")
def process_executor() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(workers=2) as ex:
        yield ex


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[RayExecutor]:
    try:
        import ray
    except ImportError:
        if os.environ.get("MEMBERLAB_REQUIRE_RAY") == "1":
            pytest.fail("Ray is required (MEMBERLAB_REQUIRE_RAY=1) but not installed.")
        pytest.skip("Ray is not installed (pip install 'memberlab[ray]').")
    path = os.pathsep.join([str(SRC), str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        with RayExecutor(workers=2) as ex:  # uses the running instance, leaves it up
            yield ex
    finally:
        ray.shutdown()


@pytest.fixture(params=["serial", "processes", "ray"])
def executor(request: pytest.FixtureRequest) -> Executor:
    """Each backend in turn (two workers where there are workers)."""
    if request.param == "serial":
        return SerialExecutor()
    if request.param == "processes":
        ex: Executor = request.getfixturevalue("process_executor")
        return ex
    ex = request.getfixturevalue("ray_executor")
    return ex
