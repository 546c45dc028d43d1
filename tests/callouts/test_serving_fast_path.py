"""The serving fast path of CalloutRecommender.decide equals the plain computation.

``decide`` sums cached per-field parts into the score mean and covariance of a context,
factorises it with LAPACK directly, draws its seed from the bit generator's raw output,
reuses one PCG64 and per-thread buffers, and builds its records through the slots. Each
shortcut is checked here against the computation it replaces, written out plainly:
scores and propensities from the feature rows, ``Generator.integers`` for seeds, the
dataclass constructors for records.
"""

from __future__ import annotations

import threading
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

import memberlab.callouts.recommender as recommender_module
from memberlab.bayes import GroupPrior
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.callouts.recommender import Decision, ServedItem
from memberlab.policy import draw_seed

BENEFITS = ["video", "music", "delivery", "reading", "grocery"]
PAGES = ["home", "video", "books", "food"]


def _catalog(n: int, rng: np.random.Generator) -> Catalog:
    return Catalog.from_records(
        [
            {
                "item_id": f"i{j}",
                "benefit": BENEFITS[int(rng.integers(len(BENEFITS)))],
                "brand": f"b{int(rng.integers(3))}",
                "price": float(rng.uniform(0, 20)),
            }
            for j in range(n)
        ]
    )


def _context(rng: np.random.Generator) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "page": str(rng.choice([*PAGES, "never-seen"])),
        "member": bool(rng.random() < 0.5),
        "age": float(rng.integers(15, 90)),
    }
    if rng.random() < 0.7:
        ctx["interests"] = [str(x) for x in rng.choice(BENEFITS, size=2, replace=False)]
    if rng.random() < 0.3:
        ctx["device"] = None  # a field without values
    return ctx


def _trained(seed: int, **kw: Any) -> tuple[CalloutRecommender, np.random.Generator]:
    rng = np.random.default_rng(seed)
    rec = CalloutRecommender(catalog=_catalog(int(rng.integers(2, 9)), rng), rng=seed, **kw)
    ids = rec.catalog.active_ids()
    rec.update(
        [
            Feedback(_context(rng), ids[int(rng.integers(len(ids)))], float(rng.random() < 0.3))
            for _ in range(int(rng.integers(0, 80)))
        ]
    )
    return rec, rng


def _plain_moments(
    rec: CalloutRecommender, context: dict[str, Any], ids: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Score mean and covariance from the feature rows: ``X mean``, ``X diag(var) X^T``
    (unregistered features at their group's prior)."""
    code = rec._features.context(context)
    keys = [rec._features.row(code, i) for i in ids]
    names = sorted({k for row in keys for k in row})
    X = np.array([[1.0 if k in set(row) else 0.0 for k in names] for row in keys])
    mom = np.array([rec._moments(g, v) for g, v in names])
    return X @ mom[:, 0], (X * mom[:, 1]) @ X.T


def _generator(seed: int) -> np.random.Generator:
    """The decision generator of ``seed``, set up through PCG64's public state."""
    bitgen = np.random.PCG64(0)
    mult, add, inc = (
        recommender_module._SEED_MULT,
        recommender_module._SEED_ADD,
        recommender_module._PCG_INC,
    )
    state = (seed * mult + add) % 2**128
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }
    return np.random.Generator(bitgen)


def rng_choice(seed: int, values: list[float]) -> float:
    return values[seed % len(values)]


@pytest.mark.parametrize("seed", range(12))
def test_decide_equals_the_plain_computation(seed: int) -> None:
    """Random catalogs, posteriors, contexts (unseen values included), candidate sets,
    k and exploration: served items, scores (to 1e-12) and propensities equal those of
    the plain computation from the feature rows (Cholesky of X diag(var) X^T)."""
    rec, rng = _trained(
        seed,
        exploration=float(rng_choice(seed, [1.0, 0.5, 2.0])),
        propensity_draws=int(20 + seed),
        cross_prior=GroupPrior(0.0, 0.3) if seed % 2 else None,
    )
    ids_all = rec.catalog.active_ids()
    for _ in range(6):
        ctx = _context(rng)
        cands = list(rng.permutation(ids_all)[: int(rng.integers(1, len(ids_all) + 1))])
        k = int(rng.integers(1, len(cands) + 1))
        dseed = int(rng.integers(0, 2**63))
        d = rec.decide(ctx, candidates=cands, k=k, seed=dseed)
        base, cov = _plain_moments(rec, ctx, cands)
        block = rec._block(ctx, cands)
        np.testing.assert_allclose(block.base, base, rtol=0, atol=1e-12)
        np.testing.assert_allclose(block.chol @ block.chol.T, cov, rtol=0, atol=1e-12)
        np.testing.assert_allclose(block.score_var, np.diag(cov), rtol=0, atol=1e-12)
        L = np.linalg.cholesky(cov)
        gen = _generator(dseed)
        e = rec.exploration
        scores = base + e * (L @ gen.standard_normal(len(cands)))
        order = np.argsort(-scores, kind="stable")[:k]
        assert d.item_ids == [cands[j] for j in order]
        np.testing.assert_allclose([s.score for s in d.items], scores[order], atol=1e-12)
        S = base + e * (gen.standard_normal((rec.propensity_draws, len(cands))) @ L.T)
        ranked = np.argsort(-S, axis=1, kind="stable")[:, :k]
        dd = rec.propensity_draws + 1
        slot = [(np.count_nonzero(ranked[:, r] == j) + 1) / dd for r, j in enumerate(order)]
        inset = [(np.count_nonzero((ranked == j).any(axis=1)) + 1) / dd for j in order]
        np.testing.assert_allclose(d.propensities, slot, rtol=0, atol=1e-12)
        np.testing.assert_allclose([s.set_propensity for s in d.items], inset, atol=1e-12)


def test_fast_seed_draw_equals_generator_integers() -> None:
    """For a PCG64 the seed is the top 63 bits of one raw output: exactly what
    ``draw_seed`` (``Generator.integers(0, 2**63)``) returns, draw after draw."""
    for seed in range(5):
        rec = CalloutRecommender(catalog=_catalog(3, np.random.default_rng(0)), rng=seed)
        ref = np.random.default_rng(seed)
        got = [rec.decide({"page": "home"}, with_propensity=False).seed for _ in range(300)]
        assert got == [draw_seed(ref) for _ in range(300)]
    # other bit generators take the general path, with the same meaning
    gen = np.random.Generator(np.random.MT19937(4))
    ref_mt = np.random.Generator(np.random.MT19937(4))
    rec = CalloutRecommender(catalog=_catalog(3, np.random.default_rng(0)), rng=gen)
    got = [rec.decide({}, with_propensity=False).seed for _ in range(50)]
    assert got == [draw_seed(ref_mt) for _ in range(50)]


def test_encoded_contexts_equal_the_uncached_encoding() -> None:
    """The inlined field cache returns what encoding each field afresh returns, on the
    first call (miss) and the next (hit), for every kind of value."""
    rec, _ = _trained(0, context_edges={"age": (18.0, 30.0, 50.0)})
    feats = rec._features
    contexts: list[dict[Any, Any]] = [
        {"page": "home", "member": True, "interests": ["b", "a", "a"]},
        {"member": 1, "score": 1.0, "n": np.int64(3), "x": np.float64(2.5)},
        {"tags": ("z", "y"), "set": {"q"}, "empty": [], "none": None, "age": 34.5},
        {"nested": {"a": 1}, "lists": [[1], [2]], "neg": -7.25, "zero": 0.0},
        {"age": 17.0, "flag": False, "big": 1e300},
    ]
    for ctx in contexts:
        plain = tuple(
            (str(k), vals)
            for k, v in sorted(ctx.items())
            if (vals := tuple(feats._values(str(k), v)))
        )
        assert feats.encode(ctx) == plain
        assert feats.encode(dict(ctx)) == plain  # from the cache
    # bools and ints are different values of a field, as before the cache
    assert feats.encode({"m": True}) != feats.encode({"m": 1})


def test_serving_records_equal_the_dataclass_constructors() -> None:
    """Serving builds ServedItem and Decision through their slots: the records equal
    the constructors' for the same values, with every field set."""
    s = recommender_module._served("i3", 0.25, 0.5, 0.75)
    assert s == ServedItem("i3", 0.25, 0.5, 0.75)
    assert [getattr(s, f.name) for f in fields(ServedItem)] == ["i3", 0.25, 0.5, 0.75]
    d = recommender_module._decision("abc", [s], 7, 11)
    assert d == Decision("abc", [s], 7, 11) and d.decision_id == "abc"
    assert [getattr(d, f.name) for f in fields(Decision)] == ["abc", [s], 7, 11]
    with pytest.raises(AttributeError):
        s.score = 1.0  # type: ignore[misc]  # still frozen


def test_block_cache_evicts_oldest_first_and_replays_after_eviction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past its size, the serving cache drops its oldest block one at a time (it used
    to drop every block at once); a decision replays exactly whether its block was
    cached or rebuilt."""
    monkeypatch.setattr(recommender_module, "_MAX_CACHE", 8)
    rec, _ = _trained(3)
    ctxs = [{"page": f"p{j}", "member": j % 2 == 0} for j in range(12)]
    first = [rec.decide(c, seed=100 + j) for j, c in enumerate(ctxs)]
    assert len(rec._blocks) == 8
    kept = [rec._features.encode(c) for c in ctxs[-8:]]
    assert [enc for enc, _ in rec._blocks] == kept
    again = [rec.decide(c, seed=100 + j) for j, c in enumerate(ctxs)]  # evicted: rebuilt
    assert again == first


def test_threads_deciding_at_once_get_the_sequential_decisions() -> None:
    """Per-thread generators and draw buffers: decisions made on four threads at once
    equal the same seeded decisions made one after another."""
    rec, rng = _trained(5, propensity_draws=50)
    jobs = [(_context(rng), int(s)) for s in rng.integers(0, 2**63, size=400)]
    expected = [rec.decide(c, seed=s, k=2 if s % 2 else 1) for c, s in jobs]
    out: list[list[Decision]] = [[] for _ in range(4)]

    def work(t: int) -> None:
        out[t] = [rec.decide(c, seed=s, k=2 if s % 2 else 1) for c, s in jobs[t::4]]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(4):
        assert out[t] == expected[t::4]


def test_singular_covariance_takes_the_jitter_path_with_the_plain_moments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Items with identical features and no id feature have identical score rows, so
    the covariance is singular: the in-place factorisation fails, the block is rebuilt
    from a fresh sum with jitter, and its mean, variances and factor still match the
    plain computation."""
    cat = Catalog.from_records(
        [{"item_id": f"i{j}", "benefit": "video" if j < 3 else "music"} for j in range(5)]
    )
    rec = CalloutRecommender(catalog=cat, item_feature=False, rng=0)
    rec.update([Feedback({"page": "home"}, "i0", 1.0), Feedback({"page": "home"}, "i4", 0.0)])
    ctx = {"page": "home", "member": True}
    ids = cat.active_ids()
    base, cov = _plain_moments(rec, ctx, ids)
    assert np.linalg.matrix_rank(cov) < len(ids)
    jittered: list[int] = []
    plain_cholesky = recommender_module._cholesky

    def counting(c: np.ndarray) -> np.ndarray:
        jittered.append(1)
        return plain_cholesky(c)

    monkeypatch.setattr(recommender_module, "_cholesky", counting)
    block = rec._block(ctx, None)
    assert jittered == [1]
    np.testing.assert_allclose(block.base, base, rtol=0, atol=1e-12)
    np.testing.assert_allclose(block.score_var, np.diag(cov), rtol=0, atol=1e-12)
    np.testing.assert_allclose(block.chol @ block.chol.T, cov, rtol=0, atol=1e-8)
    d = rec.decide(ctx, seed=3, k=2)
    assert rec.decide(ctx, seed=3, k=2) == d
    assert all(0 < p <= 1 for p in d.propensities)  # type: ignore[operator]


def test_state_bytes_write_the_state_the_setter_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decisions seed their generator by writing PCG64's 128-bit state as 16 bytes: the
    view exists on this build, a write through it is the state the public setter
    sets, and decisions equal those of a recommender that takes the setter path."""
    bitgen = np.random.PCG64(0)
    view = recommender_module._pcg_state_bytes(bitgen)
    assert view is not None
    for seed in (0, 1, 2**63 - 1, 123456789):
        state = (seed * recommender_module._SEED_MULT + recommender_module._SEED_ADD) % 2**128
        view[:] = state.to_bytes(16, "little")
        ref = _generator(seed).bit_generator.state
        assert bitgen.state["state"] == {"state": state, "inc": bitgen.state["state"]["inc"]}
        assert ref["state"]["state"] == state
    rec, rng = _trained(7, propensity_draws=30)
    jobs = [(_context(rng), int(s)) for s in rng.integers(0, 2**63, size=50)]
    fast = [rec.decide(c, seed=s, k=2 if s % 2 else 1) for c, s in jobs]
    monkeypatch.setattr(recommender_module, "_pcg_state_bytes", lambda bitgen: None)
    slow_rec, _ = _trained(7, propensity_draws=30)  # a fresh thread-local generator
    assert [slow_rec.decide(c, seed=s, k=2 if s % 2 else 1) for c, s in jobs] == fast


def test_prefix_cached_block_sums_equal_the_field_by_field_sum() -> None:
    """A block sum through the cached sum of all but the last field (a miss, then hits
    from contexts differing in the last field) has the bits of adding every field's
    part to the own part left to right."""
    rec, _ = _trained(11)
    rec._block({"page": "home"}, None)
    shape = rec._shapes[None]
    for page in [*PAGES, "never-seen", *PAGES]:
        ctx = {"age": 40.0, "interests": ["video", "music"], "member": True, "page": page}
        enc = rec._features.encode(ctx)
        assert len(enc) == 4
        got = rec._block_sum(shape, enc)
        assert enc[:-1] in shape.prefixes
        assert got.tobytes() == rec._field_sum(shape, enc).tobytes()
