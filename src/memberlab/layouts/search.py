"""Maximise a sampled layout score: batched hill climbing and exact enumeration.

A sampled weight vector is turned into two per-draw tables: ``main`` of shape
(n_draws, M) (every slot's variant scores, context terms folded in) and ``pair`` of shape
(n_draws, n_pair_features + 1) (pairwise terms, with a trailing zero column that every
non-interacting slot pair points to). The score of a layout ``l`` under draw ``k`` is

    sum_d main[k, off_d + l_d] + sum_{(a, b)} pair[k, index(a, b, l_a, l_b)]

(the bias and context bias shift every layout alike and are left out).

Hill climbing keeps, for every (restart, slot, variant), the *field*: the score change of
putting that variant in that slot with the other slots fixed. A step takes the best
single-slot change over all slots (steepest ascent) and refreshes the field in
O(n_slots * n_variants); a restart stops when no single-slot change improves its score.
Many draws and restarts run together as one batch; the work of one decision depends on
n_slots, n_variants, restarts and draws, never on the number of layouts.

Single-slot moves have a blind spot: a layout that wins only through its interactions
(the basin model of :mod:`memberlab.layouts.simulate`) sits behind a main-effects local
optimum that every single-slot move leaves for the worse. :func:`best_of_draws` therefore
also climbs, for every draw, from greedy starts built out of its largest pairwise terms
(O(n_pair_cells) to find the seed, O(n_slots^2 * n_variants) to fill the rest). The
climb runs on float32 copies of the tables; final scores are recomputed in float64.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from memberlab._errors import DataValidationError
from memberlab._typing import BoolArray, FloatArray, IntArray
from memberlab.layouts.features import FeatureMap
from memberlab.layouts.space import LayoutSpace

__all__ = [
    "Enumeration",
    "SearchTables",
    "best_of_draws",
    "dense_pairs",
    "exact_argmax",
    "exact_scores",
    "hill_climb",
    "layout_scores",
    "random_layouts",
    "unary_table",
    "workspace",
]

Floats = npt.NDArray[np.floating[Any]]  # float64 or float32 tables of the climb

_GAIN_TOL = 1e-10
_GAIN_TOL32 = 1e-5  # float32 fields: rounding drift stays far below this
_LOCAL = threading.local()


def workspace(
    key: object, shape: tuple[int, ...], *, zeros: bool = False, dtype: type = np.float64
) -> Floats:
    """A float buffer reused across calls in this thread (no fresh pages per decision).

    With ``zeros=True`` the buffer is zero-filled when first made and callers must only
    ever write the same entries to it (so the rest stays zero).
    """
    cache: dict[object, Floats] | None = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    full_key = (key, shape, zeros, dtype)
    buf = cache.get(full_key)
    if buf is None:
        if len(cache) > 64:
            cache.clear()
        buf = np.zeros(shape, dtype=dtype) if zeros else np.empty(shape, dtype=dtype)
        cache[full_key] = buf
    return buf


@dataclass(frozen=True, slots=True)
class SearchTables:
    """Static index tables of one space for fast search.

    Attributes
    ----------
    n_slots, n_max, n_main, n_pair_cols : int
        Slots, largest variant count, main features (M), pair columns (with the zero).
    main_pad : ndarray of shape (n_slots, n_max)
        Column of ``main`` for each (slot, variant); ``n_main`` (a -inf column) on padding.
    pair_t : ndarray of shape (n_slots * n_max, n_slots * n_max)
        ``pair_t[d * n_max + w, e * n_max + v]`` is the ``pair`` column of the term between
        slot d at variant w and slot e at variant v (the zero column if they do not interact).
    pair_blocks : ndarray of shape (n_pairs, 5)
        ``(a, b, first column in pair, sizes[a], sizes[b])`` of each interacting pair.
    cell_main : ndarray of shape (n_pair_cols - 1, 2)
        The two ``main`` columns of each pair cell (slot a's and slot b's variant).
    cell_rows : ndarray of shape (n_pair_cols - 1, 2)
        The two field positions ``d * n_max + v`` of each pair cell.
    cons_onehot : ndarray of shape (n_constraints, n_slots, n_max)
    cons_req : ndarray of shape (n_constraints, n_slots)
    cons_k : ndarray of shape (n_constraints,)
    """

    n_slots: int
    n_max: int
    n_main: int
    n_pair_cols: int
    main_pad: IntArray
    pair_t: IntArray
    pair_blocks: IntArray
    cons_onehot: BoolArray
    cons_req: BoolArray
    cons_k: IntArray
    cell_main: IntArray
    cell_rows: IntArray

    @classmethod
    def build(cls, fmap: FeatureMap) -> SearchTables:
        space = fmap.space
        D = space.n_slots
        sizes = space.sizes
        n_max = int(sizes.max())
        M = fmap.n_main
        main_pad = np.full((D, n_max), M, dtype=np.int64)
        for d in range(D):
            main_pad[d, : sizes[d]] = fmap.main_offset[d] - 1 + np.arange(sizes[d])
        zero = fmap.n_pair_features
        pair4 = np.full((D, D, n_max, n_max), zero, dtype=np.int64)  # [d, e, v_d, v_e]
        blocks = np.zeros((fmap.pairs.shape[0], 5), dtype=np.int64)
        cell_main = np.zeros((zero, 2), dtype=np.int64)
        cell_rows = np.zeros((zero, 2), dtype=np.int64)
        for p, (a, b) in enumerate(fmap.pairs.tolist()):
            na, nb = int(sizes[a]), int(sizes[b])
            base = int(fmap.pair_offset[p]) - 1 - M
            blocks[p] = (a, b, base, na, nb)
            block = base + np.arange(na)[:, None] * nb + np.arange(nb)[None, :]
            pair4[a, b, :na, :nb] = block
            pair4[b, a, :nb, :na] = block.T
            va, vb = np.divmod(np.arange(na * nb), nb)
            cell_main[base : base + na * nb] = np.stack([main_pad[a, va], main_pad[b, vb]], 1)
            cell_rows[base : base + na * nb] = np.stack([a * n_max + va, b * n_max + vb], 1)
        # pair_t[(d, w), (e, v)] = pair4[e, d, v, w]
        pair_t = pair4.transpose(1, 3, 0, 2).reshape(D * n_max, D * n_max).copy()
        A = space.constraint_array
        C = A.shape[0]
        onehot = np.zeros((C, D, n_max), dtype=bool)
        cc, dd = np.nonzero(A >= 0)
        onehot[cc, dd, A[cc, dd]] = True
        req = A >= 0
        return cls(
            n_slots=D,
            n_max=n_max,
            n_main=M,
            n_pair_cols=zero + 1,
            main_pad=main_pad,
            pair_t=pair_t,
            pair_blocks=blocks,
            cons_onehot=onehot,
            cons_req=req,
            cons_k=req.sum(axis=1).astype(np.int64),
            cell_main=cell_main,
            cell_rows=cell_rows,
        )


def random_layouts(space: LayoutSpace, n: int, rng: np.random.Generator) -> IntArray:
    """``n`` allowed layouts, uniform over allowed layouts (rejection sampling).

    Rows still forbidden after 50 rounds of rejection (very tight constraints) fall back
    to a randomised depth-first search, which is allowed but not exactly uniform.

    Returns
    -------
    ndarray of shape (n, n_slots)
    """
    sizes = space.sizes
    L = (rng.random((n, space.n_slots)) * sizes[None, :]).astype(np.int64)
    if space.n_constraints == 0:
        return L
    bad = np.flatnonzero(space.violations(L))
    for _ in range(50):
        if bad.shape[0] == 0:
            return L
        L[bad] = (rng.random((bad.shape[0], space.n_slots)) * sizes[None, :]).astype(np.int64)
        bad = bad[space.violations(L[bad])]
    for i in bad.tolist():
        found = space.first_allowed(rng)
        if found is None:  # pragma: no cover - LayoutSpace refuses such constraints
            raise DataValidationError("constraints forbid every layout.")
        L[i] = found
    return L


def _forbidden(tables: SearchTables, L: IntArray) -> BoolArray:
    """Which single-slot changes would break a constraint, shape (n, n_slots, n_max)."""
    oh = tables.cons_onehot
    C, D, n_max = oh.shape
    flat = oh.reshape(-1)
    idx = (np.arange(C) * D * n_max)[None, :, None] + (np.arange(D) * n_max)[None, None, :]
    match = flat[idx + L[:, None, :]]  # (n, C, D): constraint c's entry on slot d holds
    mc = match.sum(axis=2)
    others = tables.cons_req[None, :, :] & (
        (mc[:, :, None] - match) == (tables.cons_k - 1)[None, :, None]
    )
    z = np.einsum("ncd,cdv->ndv", others.astype(np.float64), oh.astype(np.float64))
    return np.asarray(z > 0.5)


def unary_table(tables: SearchTables, main: FloatArray) -> FloatArray:
    """Padded per-slot variant scores, (n_draws, M) -> (n_draws, n_slots, n_max)."""
    ext = np.concatenate([main, np.full((main.shape[0], 1), -np.inf)], axis=1)
    return ext[:, tables.main_pad]


def dense_pairs(tables: SearchTables, pair: FloatArray, *, dtype: type = np.float64) -> Floats:
    """Per-draw symmetric pair tables, (n_draws, n_pair_cols) -> (n_draws, D * n_max, D * n_max).

    Entry ``[k, d * n_max + w, e * n_max + v]`` is draw k's term between slot d at
    variant w and slot e at variant v (0 if the slots do not interact). Built by block
    copies, so a hill-climbing step reads whole contiguous rows.
    """
    D, n_max = tables.n_slots, tables.n_max
    K = pair.shape[0]
    # the same blocks are written on every call, everything else stays zero
    key = ("dense_pairs", tables.pair_blocks.tobytes(), n_max)
    T = workspace(key, (K, D, n_max, D, n_max), zeros=True, dtype=dtype)
    for a, b, base, na, nb in tables.pair_blocks.tolist():
        block = pair[:, base : base + na * nb].reshape(K, na, nb)
        T[:, a, :na, b, :nb] = block
        T[:, b, :nb, a, :na] = block.transpose(0, 2, 1)
    return T.reshape(K, D * n_max, D * n_max)


def hill_climb(
    tables: SearchTables,
    main: FloatArray,
    pair: FloatArray,
    draw_of: IntArray,
    starts: IntArray,
    *,
    max_steps: int,
) -> tuple[IntArray, FloatArray]:
    """Steepest-ascent hill climbing of many (draw, restart) elements at once.

    Parameters
    ----------
    main : ndarray of shape (n_draws, M)
    pair : ndarray of shape (n_draws, n_pair_cols); the last column must be 0
    draw_of : ndarray of shape (n,)
        Which draw each element climbs.
    starts : ndarray of shape (n, n_slots)
        Allowed start layouts.
    max_steps : int
        Most single-slot changes per element.

    Returns
    -------
    layouts : ndarray of shape (n, n_slots)
        Local optima (or where ``max_steps`` stopped the climb).
    scores : ndarray of shape (n,)
        Their scores, bias excluded.
    """
    DN = tables.n_slots * tables.n_max
    unary = unary_table(tables, main).reshape(main.shape[0], DN)
    T = dense_pairs(tables, pair).reshape(-1, DN)  # row k * DN + (d, w)
    k = np.asarray(draw_of, dtype=np.int64)
    L = _climb(tables, unary, T, k, np.array(starts, dtype=np.int64), max_steps)
    return L, exact_scores(tables, main, pair, k, L)


def best_of_draws(
    tables: SearchTables,
    main: FloatArray,
    pair: FloatArray,
    starts: IntArray,
    *,
    n_restarts: int,
    pair_starts: int,
    max_steps: int,
) -> tuple[IntArray, FloatArray]:
    """Best layout of each draw over its restarts and its pair-seeded greedy starts.

    Parameters
    ----------
    main : ndarray of shape (n_draws, M)
    pair : ndarray of shape (n_draws, n_pair_cols); the last column must be 0
    starts : ndarray of shape (n_draws * n_restarts, n_slots)
        Allowed start layouts, draw by draw (row ``k * n_restarts + r``).
    pair_starts : int
        Extra starts per draw built greedily from the interactions alone: each of the
        draw's ``pair_starts`` largest pairwise terms fixes two slots, then the other
        slots are filled one at a time with the variant whose pairwise terms with the
        slots already set sum highest. Such a start lies in the basin of a layout held
        together by its interactions, which single-slot moves from random starts (pulled
        towards the main effects) rarely reach. Starts that break a
        constraint are replaced by the draw's first start.
    max_steps : int
        Most single-slot changes per climb.

    Returns
    -------
    layouts : ndarray of shape (n_draws, n_slots)
    scores : ndarray of shape (n_draws,)
    """
    unary, T, S, k, E = _prepare(tables, main, pair, starts, n_restarts, pair_starts)
    L = _climb(tables, unary, T, k, S, max_steps)
    K = main.shape[0]
    s = exact_scores(tables, main, pair, k, L).reshape(K, E)
    best = np.argmax(s, axis=1)
    rows = np.arange(K) * E + best
    return L[rows], s[np.arange(K), best]


def _prepare(
    tables: SearchTables,
    main: FloatArray,
    pair: FloatArray,
    starts: IntArray,
    n_restarts: int,
    pair_starts: int,
) -> tuple[Floats, Floats, IntArray, IntArray, int]:
    """float32 tables, all start layouts, their draws and the climbs per draw."""
    K = main.shape[0]
    D, n_max = tables.n_slots, tables.n_max
    DN = D * n_max
    R = n_restarts
    # the climb runs in float32 (half the memory traffic); final scores are float64
    unary = unary_table(tables, main).reshape(K, DN).astype(np.float32)
    T = dense_pairs(tables, pair, dtype=np.float32).reshape(-1, DN)
    S = np.array(starts, dtype=np.int64)
    n_cells = tables.cell_main.shape[0]
    G = min(pair_starts, n_cells) if D > 2 else 0
    if G > 0:
        greedy = _greedy_starts(tables, pair, T, G)
        if tables.cons_onehot.shape[0] > 0:
            bad = _violations(tables, greedy)
            greedy[bad] = S[(np.arange(K * G) // G)[bad] * R]
        # element order: draw k's R restarts, then its G greedy starts
        S = np.concatenate([S.reshape(K, R, D), greedy.reshape(K, G, D)], axis=1).reshape(-1, D)
    E = R + G
    return unary, T, S, np.repeat(np.arange(K), E), E


def _violations(tables: SearchTables, L: IntArray) -> BoolArray:
    """Whether each layout breaks a constraint, (n, n_slots) -> (n,)."""
    oh = tables.cons_onehot  # (C, D, n_max)
    D = tables.n_slots
    hit = oh[:, np.arange(D)[None, :], L]  # (C, n, D)
    full = (hit | ~tables.cons_req[:, None, :]).all(axis=2)
    return np.asarray(full.any(axis=0))


def _greedy_starts(tables: SearchTables, pair: FloatArray, T: Floats, G: int) -> IntArray:
    """``G`` greedy layouts per draw from its best pair cells, shape (n_draws * G, n_slots).

    Both the seed cells and the fill look at the pairwise terms only.
    """
    K = pair.shape[0]
    D, n_max = tables.n_slots, tables.n_max
    DN = D * n_max
    tot = pair[:, :-1]  # (K, n_cells)
    if G == 1:
        cells = np.argmax(tot, axis=1)[:, None]
    else:
        cells = np.argpartition(-tot, G - 1, axis=1)[:, :G]
    pos = tables.cell_rows[cells.ravel()]  # (K * G, 2) field positions d * n_max + v
    n = K * G
    kbase = np.repeat(np.arange(K) * DN, G)
    # the fill sees the interactions only: main effects are what random restarts and the
    # incumbent already climb to
    F = T[kbase + pos[:, 0]] + T[kbase + pos[:, 1]]
    L = np.full((n, D), -1, dtype=np.int64)
    ar = np.arange(n)
    d0, d1 = pos[:, 0] // n_max, pos[:, 1] // n_max
    L[ar, d0] = pos[:, 0] - d0 * n_max
    L[ar, d1] = pos[:, 1] - d1 * n_max
    # a slot once set, and padding variants of smaller slots, are never chosen
    F[:, (tables.main_pad == tables.n_main).ravel()] = -np.inf
    Fv = F.reshape(n, D, n_max)
    Fv[ar, d0] = -np.inf
    Fv[ar, d1] = -np.inf
    for _ in range(D - 2):
        best = F.argmax(axis=1)
        d = best // n_max
        L[ar, d] = best - d * n_max
        F += T[kbase + best]
        Fv[ar, d] = -np.inf
    return L


def _climb(
    tables: SearchTables,
    unary: Floats,
    T: Floats,
    k: IntArray,
    L: IntArray,
    max_steps: int,
) -> IntArray:
    """Steepest ascent from ``L`` (changed in place and returned), see :func:`hill_climb`."""
    D, n_max = tables.n_slots, tables.n_max
    DN = D * n_max
    n = L.shape[0]
    kbase = k * DN
    slot_base = np.arange(D) * n_max
    # field F[i, (e, v)] = unary + sum over slots d of the pair term with d at L[i, d]
    F = unary[k]  # (n, DN), a fresh copy
    F += T[(kbase[:, None] + slot_base[None, :] + L).ravel()].reshape(n, D, DN).sum(axis=1)
    has_cons = tables.cons_onehot.shape[0] > 0
    tol = _GAIN_TOL if F.dtype == np.float64 else _GAIN_TOL32
    act = np.arange(n)  # elements still climbing; F, La, kb hold their rows
    La, kb = L, kbase
    ar = np.arange(n)
    cur_at = (ar * DN)[:, None] + slot_base[None, :]  # flat position in F of (row, slot, 0)
    for _ in range(max_steps):
        a = act.shape[0]
        ara = ar[:a]
        cur = F.ravel()[cur_at[:a] + La]  # (a, D) field at the current variants
        gain = F.reshape(a, D, n_max) - cur[:, :, None]
        if has_cons:
            gain[_forbidden(tables, La)] = -np.inf
        gain = gain.reshape(a, DN)
        best = gain.argmax(axis=1)
        moving = gain.ravel()[ara * DN + best] > tol
        n_moving = int(np.count_nonzero(moving))
        if n_moving < a:
            L[act] = La
            if n_moving == 0:
                return L
            F, best, La, act, kb = F[moving], best[moving], La[moving], act[moving], kb[moving]
            a = n_moving
            ara = ar[:a]
        d, v = np.divmod(best, n_max)
        new_row = kb + best  # row of T for slot d at variant v
        F += T[new_row]
        F -= T[new_row + (La[ara, d] - v)]
        La[ara, d] = v
    L[act] = La
    return L


def exact_scores(
    tables: SearchTables, main: FloatArray, pair: FloatArray, k: IntArray, L: IntArray
) -> FloatArray:
    """Score of each layout ``L[i]`` under draw ``k[i]`` from the tables, shape (n,).

    Bias excluded; computed in the tables' precision (float64) whatever the climb used.
    """
    D = tables.n_slots
    s = main[k[:, None], tables.main_pad[np.arange(D)[None, :], L]].sum(axis=1)
    if tables.pair_blocks.shape[0]:
        a, b, base, _, nb = tables.pair_blocks.T
        s += pair[k[:, None], base + L[:, a] * nb + L[:, b]].sum(axis=1)
    return np.asarray(s)


def layout_scores(
    tables: SearchTables, unary: Floats, T: Floats, k: IntArray, L: IntArray
) -> FloatArray:
    """Score of each layout ``L[i]`` under draw ``k[i]`` (bias excluded), shape (n,).

    ``unary`` has shape (n_draws, D * n_max); ``T`` is :func:`dense_pairs` reshaped to
    (n_draws * D * n_max, D * n_max).
    """
    D, n_max = tables.n_slots, tables.n_max
    rows = np.arange(D) * n_max + L  # (n, D)
    s = np.take_along_axis(unary[k], rows, axis=1).sum(axis=1)
    a, b = np.triu_indices(D, 1)
    pairs = T[(k * D * n_max)[:, None] + rows[:, a], rows[:, b]]
    return np.asarray(s + pairs.sum(axis=1))


class Enumeration:
    """Every allowed layout of a small space, for exact argmax of sampled scores.

    Parameters
    ----------
    fmap : FeatureMap
    max_layouts : int
        Refuse spaces with more layouts than this.
    """

    def __init__(self, fmap: FeatureMap, *, max_layouts: int) -> None:
        space = fmap.space
        L = space.all_layouts(max_layouts=max_layouts)
        L = L[~space.violations(L)]
        self.layouts = L
        static = fmap.static_indices(L)[:, 1:] - 1  # main in [0, M), pair in [M, M + P)
        n, w = static.shape
        self.design = sparse.csr_matrix(
            (np.ones(n * w), static.ravel(), np.arange(n + 1) * w),
            shape=(n, fmap.n_main + fmap.n_pair_features),
        )

    def scores(self, main: FloatArray, pair: FloatArray) -> FloatArray:
        """Scores of every allowed layout, shape (n_draws, n_allowed)."""
        W = np.concatenate([main, pair[:, :-1]], axis=1)
        return np.asarray(self.design @ W.T).T


def exact_argmax(
    enum: Enumeration, main: FloatArray, pair: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Best allowed layout of each draw by enumeration.

    Returns
    -------
    layouts : ndarray of shape (n_draws, n_slots)
    scores : ndarray of shape (n_draws,)
    """
    s = enum.scores(main, pair)
    best = np.argmax(s, axis=1)
    return enum.layouts[best], s[np.arange(s.shape[0]), best]
