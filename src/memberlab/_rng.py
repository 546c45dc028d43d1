"""One convention for randomness: ``rng: int | np.random.Generator | None``."""

from __future__ import annotations

import numpy as np

__all__ = ["RNGLike", "as_generator", "spawn"]

RNGLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(rng: RNGLike) -> np.random.Generator:
    """Normalise ``rng`` to a :class:`numpy.random.Generator`.

    A generator is returned as is (shared state, on purpose); an int or seed sequence
    seeds a fresh PCG64; ``None`` draws fresh entropy from the OS.

    >>> as_generator(3).integers(10) == as_generator(3).integers(10)
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, int | np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be an int, a numpy Generator, a SeedSequence or None, got {type(rng).__name__}."
    )


def spawn(rng: RNGLike, n: int) -> list[np.random.Generator]:
    """Independent child generators for parallel or per-seed work."""
    if n < 0:
        raise ValueError(f"n == {n}, must be >= 0.")
    if isinstance(rng, np.random.Generator):
        return list(rng.spawn(n))
    seq = rng if isinstance(rng, np.random.SeedSequence) else np.random.SeedSequence(rng)
    return [np.random.default_rng(s) for s in seq.spawn(n)]
