"""One rule for decision seeds, shared by every policy kind and the service.

A decision's seed is an int in ``[0, SEED_BOUND)`` (63 bits, so it fits a signed 64-bit
database column). ``rng`` means the same thing everywhere: the *source* of a seed, an
``int | Generator | None`` normalised by :func:`memberlab._rng.as_generator`; ``seed``
is the decision's seed itself (what a replay passes).
"""

from __future__ import annotations

import os
import secrets

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator

__all__ = ["SEED_BOUND", "check_seed", "draw_seed", "new_decision_id", "new_seed"]

SEED_BOUND = 2**63


def new_seed() -> int:
    """A fresh seed from the operating system (what the service uses per request)."""
    return secrets.randbits(63)


def new_decision_id() -> str:
    """A fresh decision id (32 hex digits from the OS's random source, the format of a
    uuid4's hex), the same format for every kind.

    The id names one served decision, for joining its feedback; it is never derived from
    the seed, so decisions that share a seed (a replay, an explicit ``seed=``) still get
    distinct ids. Decisions compare equal on their content, not their id.
    """
    return os.urandom(16).hex()  # a quarter of uuid4().hex's cost on the decide path


def draw_seed(rng: RNGLike) -> int:
    """A seed drawn from ``rng`` (an int seeds a fresh generator, so ``rng=5`` gives the
    same seed every call; a generator is advanced)."""
    return int(as_generator(rng).integers(0, SEED_BOUND))


def check_seed(seed: object) -> int:
    """``seed`` as an int, or :class:`DataValidationError` naming the allowed range."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise DataValidationError(f"seed == {seed!r}, must be an int in [0, 2**63).")
    s = int(seed)
    if not 0 <= s < SEED_BOUND:
        raise DataValidationError(f"seed == {s}, must be in [0, 2**63).")
    return s
