import numpy as np
import pytest

from memberlab._rng import as_generator, spawn


def test_int_seed_is_reproducible() -> None:
    assert as_generator(7).normal() == as_generator(7).normal()


def test_generator_passes_through() -> None:
    g = np.random.default_rng(1)
    assert as_generator(g) is g


def test_spawn_gives_independent_streams() -> None:
    a, b = spawn(3, 2)
    assert a.normal() != b.normal()
    assert [g.normal() for g in spawn(3, 2)] == [g.normal() for g in spawn(3, 2)]


def test_bad_rng_type_names_the_problem() -> None:
    with pytest.raises(TypeError, match="rng must be"):
        as_generator("seed")  # type: ignore[arg-type]
