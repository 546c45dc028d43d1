"""Module-level task functions for the executor tests (importable by every worker)."""

from __future__ import annotations

import os
import time

import numpy as np


def square(x: int) -> int:
    return x * x


def offset(shared: dict[str, int], x: int) -> int:
    return shared["base"] + x


def draws(seed: np.random.SeedSequence) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(5)


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"x == {x} is not allowed here")
    time.sleep(0.01)
    return x


def die_on_three(x: int) -> int:
    if x == 3:
        os._exit(7)
    time.sleep(0.2)
    return x


def spin(seconds: float) -> float:
    """Busy CPU for about ``seconds`` of process time."""
    t0 = time.process_time()
    x = 0.0
    while time.process_time() - t0 < seconds:
        x += 1.0
    return x
