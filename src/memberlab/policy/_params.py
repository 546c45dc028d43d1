"""Hyperparameters every policy kind spells and checks the same way."""

from __future__ import annotations

import math

import numpy as np

from memberlab._errors import DataValidationError

__all__ = ["check_exploration"]


def check_exploration(value: object) -> float:
    """``exploration`` as a float, or :class:`DataValidationError` naming the range.

    The exploration scale multiplies the posterior standard deviation of a policy's
    Thompson draws: 1 is plain Thompson sampling, 0 greedy on the posterior mean.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise DataValidationError(f"exploration == {value!r}, must be a finite number >= 0.")
    x = float(value)
    if not (math.isfinite(x) and x >= 0):
        raise DataValidationError(f"exploration == {value!r}, must be a finite number >= 0.")
    return x
