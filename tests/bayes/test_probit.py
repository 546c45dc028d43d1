"""Properties of the probit ADF learner (issue 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlab import DataValidationError, SchemaVersionError
from memberlab.bayes import SparseRows, load_state, probit, save_state

N_FEATURES = 40

rows_st = st.lists(
    st.lists(st.integers(0, N_FEATURES - 1), min_size=0, max_size=12, unique=True),
    min_size=1,
    max_size=20,
)


def _state(seed: int) -> probit.ProbitState:
    rng = np.random.default_rng(seed)
    s = probit.init(N_FEATURES, prior_mean=rng.normal(0, 1, N_FEATURES), prior_var=0.5)
    return s


@settings(max_examples=60, deadline=None)
@given(rows=rows_st, labels=st.data(), seed=st.integers(0, 10))
def test_variance_never_grows_on_update(
    rows: list[list[int]], labels: st.DataObject, seed: int
) -> None:
    y = np.array(labels.draw(st.lists(st.integers(0, 1), min_size=len(rows), max_size=len(rows))))
    s0 = _state(seed)
    X = SparseRows.from_lists(rows)
    for fn in (probit.update, probit.update_parallel):
        s1 = fn(s0, X, y)
        assert np.all(s1.var <= s0.var + 1e-15)
        assert np.all(np.isfinite(s1.mean)) and np.all(s1.var > 0)


@settings(max_examples=60, deadline=None)
@given(row=st.lists(st.integers(0, N_FEATURES - 1), max_size=15, unique=True), y=st.integers(0, 1))
def test_batch_of_one_equals_single_update(row: list[int], y: int) -> None:
    s0 = _state(3)
    one = probit.update_one(s0, np.array(row, dtype=np.int64), None, y)
    X = SparseRows.from_lists([row])
    for fn in (probit.update, probit.update_parallel):
        batch = fn(s0, X, np.array([y]))
        np.testing.assert_allclose(batch.mean, one.mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(batch.var, one.var, rtol=1e-12, atol=1e-14)


def test_sequential_batch_equals_repeated_single_updates() -> None:
    rng = np.random.default_rng(0)
    rows = [list(rng.choice(N_FEATURES, 8, replace=False)) for _ in range(50)]
    y = rng.integers(0, 2, 50)
    s = _state(1)
    for r, yi in zip(rows, y, strict=True):
        s = probit.update_one(s, np.array(r), None, int(yi))
    b = probit.update(_state(1), SparseRows.from_lists(rows), y)
    np.testing.assert_allclose(b.mean, s.mean, rtol=0, atol=0)
    np.testing.assert_allclose(b.var, s.var, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["probit"])
def test_save_load_round_trips_exactly(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    s = probit.update(
        _state(0),
        SparseRows.from_lists([list(rng.choice(N_FEATURES, 5, replace=False)) for _ in range(30)]),
        rng.integers(0, 2, 30),
    )
    save_state(s, tmp_path / "model", meta={"version": 7})
    loaded, meta = load_state(tmp_path / "model")
    assert isinstance(loaded, probit.ProbitState)
    assert meta == {"version": 7}
    for name in ("mean", "var", "prior_mean", "prior_var"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(s, name))
    assert loaded.noise == s.noise


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    save_state(_state(0), tmp_path / "m")
    text = (tmp_path / "m.json").read_text().replace('"schema_version": 1', '"schema_version": 99')
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(SchemaVersionError, match="schema_version 99"):
        load_state(tmp_path / "m")


@pytest.mark.parametrize("y", [0, 1])
def test_extreme_inputs_stay_finite(y: int) -> None:
    n = 5000
    s = probit.init(n, prior_mean=0.0, prior_var=1.0)
    # Thousands of active features in one row, then an all-zero row.
    s = probit.update_one(s, np.arange(n), None, y)
    s = probit.update_one(s, np.array([], dtype=np.int64), None, y)
    # A confidently wrong prediction (t near -40): v(t) must not overflow.
    s2 = probit.init(
        3, prior_mean=np.array([30.0, 30.0, 30.0]) * (1 if y == 0 else -1), prior_var=1e-4
    )
    s2 = probit.update_one(s2, np.arange(3), None, y)
    for st_ in (s, s2):
        assert (
            np.all(np.isfinite(st_.mean)) and np.all(np.isfinite(st_.var)) and np.all(st_.var > 0)
        )
    # Many identical updates drive probabilities near 0 or 1 without NaN.
    X = SparseRows.from_lists([[0, 1]] * 20000)
    s3 = probit.update_parallel(probit.init(2), X, np.full(20000, y))
    p = probit.predict_proba(s3, SparseRows.from_lists([[0, 1]]))
    assert np.all(np.isfinite(p)) and (p[0] > 0.99 if y else p[0] < 0.01)


def test_learns_known_weights() -> None:
    # Probit data with known weights; sequential ADF recovers them (seed 0, tol 0.15).
    rng = np.random.default_rng(0)
    w = np.array([-1.0, 0.8, -0.5, 1.2, 0.0, 0.3])
    X = (rng.random((20000, 6)) < 0.4).astype(float)
    y = (X @ w + rng.standard_normal(20000) > 0).astype(int)
    s = probit.update(probit.init(6, prior_var=4.0), SparseRows.from_dense(X), y)
    np.testing.assert_allclose(s.mean, w, atol=0.15)


def test_decay_moves_toward_prior_and_never_shrinks_variance() -> None:
    s0 = probit.init(4, prior_mean=0.5, prior_var=2.0)
    s = probit.update(s0, SparseRows.from_lists([[0, 1], [1, 2]] * 50), np.array([1, 0] * 50))
    d = probit.decay(s, 0.3)
    assert np.all(d.var >= s.var) and np.all(d.var <= s0.prior_var + 1e-12)
    full = probit.decay(s, 1.0)
    np.testing.assert_allclose(full.mean, s0.prior_mean)
    np.testing.assert_allclose(full.var, s0.prior_var)
    with pytest.raises(DataValidationError, match=r"rate == 1\.5"):
        probit.decay(s, 1.5)


def test_likelihood_messages_divide_out_the_prior() -> None:
    s0 = probit.init(3, prior_mean=np.array([1.0, -1.0, 0.0]), prior_var=0.3)
    s = probit.update(s0, SparseRows.from_lists([[0], [0], [1]]), np.array([1, 0, 1]))
    prec, mean = probit.likelihood_messages(s)
    assert prec[2] == 0 and mean[2] == 0
    # Multiplying the message back onto the prior gives the posterior.
    post_prec = 1 / s0.prior_var + prec
    np.testing.assert_allclose(1 / post_prec, s.var)
    np.testing.assert_allclose((s0.prior_mean / s0.prior_var + prec * mean) / post_prec, s.mean)


def test_bad_input_names_the_problem() -> None:
    s = probit.init(3)
    with pytest.raises(DataValidationError, match="out of range"):
        probit.update_one(s, np.array([5]), None, 1)
    with pytest.raises(DataValidationError, match="must be 0 or 1"):
        probit.update_one(s, np.array([0]), None, 2)
    with pytest.raises(DataValidationError, match="noise == -1"):
        probit.init(3, noise=-1)
