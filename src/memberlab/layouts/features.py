"""The feature map of a layout space: bias, main effects, pairwise terms, context terms.

Feature layout (binary features, one weight each)::

    [0]                              bias                       group "bias"
    [1, 1 + M)                       slot d variant v           group "first_order"
    [1 + M, n_static)                pair (a, b) variants (v, w) group "second_order"
    n_static + k * (1 + M) + 0       context value k            group "context"
    n_static + k * (1 + M) + 1 + j   context value k x main j   group "context"

with ``M = sum(sizes)``. Context values (e.g. ``device=mobile``) get a block each as they
first appear in training data, so a live model can grow.
"""

from __future__ import annotations

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._typing import IntArray
from memberlab.bayes import SparseRows
from memberlab.layouts.space import LayoutSpace

__all__ = ["GROUPS", "FeatureMap"]

GROUPS: tuple[str, ...] = ("bias", "first_order", "second_order", "context")


class FeatureMap:
    """Index arithmetic of a :class:`LayoutSpace`'s features (no learned state).

    Attributes
    ----------
    main_offset : ndarray of shape (n_slots,)
        Feature index of variant 0 of each slot.
    pair_offset : ndarray of shape (n_pairs,)
        Feature index of the (0, 0) term of each interacting pair; term (v, w) is at
        ``pair_offset[p] + v * sizes[b] + w``.
    n_main, n_pair_features, n_static, block_size : int
    """

    def __init__(self, space: LayoutSpace) -> None:
        self.space = space
        sizes = space.sizes
        self.sizes = sizes
        self.n_slots = space.n_slots
        self.n_main = int(sizes.sum())
        self.main_offset = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        pairs = space.pairs
        self.pairs = pairs
        pair_sizes = sizes[pairs[:, 0]] * sizes[pairs[:, 1]]
        self.n_pair_features = int(pair_sizes.sum())
        self.pair_offset = (
            1 + self.n_main + np.concatenate([[0], np.cumsum(pair_sizes)[:-1]]).astype(np.int64)
        )[: pairs.shape[0]]
        self.n_static = 1 + self.n_main + self.n_pair_features
        self.block_size = 1 + self.n_main

    def n_features(self, n_blocks: int) -> int:
        """Number of features with ``n_blocks`` context values registered."""
        return self.n_static + n_blocks * self.block_size

    def group_ids(self, n_blocks: int) -> IntArray:
        """Index into :data:`GROUPS` of each feature, shape (n_features,)."""
        g = np.empty(self.n_features(n_blocks), dtype=np.int64)
        g[0] = 0
        g[1 : 1 + self.n_main] = 1
        g[1 + self.n_main : self.n_static] = 2
        g[self.n_static :] = 3
        return g

    def static_indices(self, layouts: IntArray) -> IntArray:
        """Active bias, main and pair features of each layout.

        Parameters
        ----------
        layouts : ndarray of shape (n, n_slots)

        Returns
        -------
        ndarray of shape (n, 1 + n_slots + n_pairs)
        """
        L = np.asarray(layouts, dtype=np.int64)
        n = L.shape[0]
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        pair = self.pair_offset[None, :] + L[:, a] * self.sizes[b][None, :] + L[:, b]
        return np.concatenate(
            [np.zeros((n, 1), dtype=np.int64), self.main_offset[None, :] + L, pair], axis=1
        )

    def rows(self, layouts: IntArray, blocks: IntArray | None = None) -> SparseRows:
        """Binary feature rows of layouts, with context blocks.

        Parameters
        ----------
        layouts : ndarray of shape (n, n_slots)
        blocks : ndarray of shape (n, n_fields), optional
            Context block of each context field of each row; -1 where a field is absent.
        """
        static = self.static_indices(layouts)
        n = static.shape[0]
        if blocks is None or blocks.size == 0:
            indptr = np.arange(n + 1, dtype=np.int64) * static.shape[1]
            ind = static.ravel()
            return SparseRows(indptr, ind, np.ones(ind.shape[0]))
        blk = np.asarray(blocks, dtype=np.int64)
        if blk.shape[0] != n:
            raise DataValidationError(f"blocks has {blk.shape[0]} rows, layouts {n}; must match.")
        base = self.n_static + blk * self.block_size  # (n, F)
        # per field: context bias then context x main features of the chosen variants
        mains = static[:, 1 : 1 + self.n_slots]  # (n, D) absolute main indices (>= 1)
        ctx = np.concatenate(
            [base[:, :, None], base[:, :, None] + mains[:, None, :]], axis=2
        )  # (n, F, 1 + D)
        ctx = np.where(blk[:, :, None] >= 0, ctx, -1).reshape(n, -1)
        full = np.concatenate([static, ctx], axis=1)
        keep = full >= 0
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        ind = full[keep]
        return SparseRows(indptr, ind, np.ones(ind.shape[0]))

    def describe(self, index: int) -> str:
        """Human-readable name of a static feature (context features by block number)."""
        sp = self.space
        if index == 0:
            return "bias"
        if index < 1 + self.n_main:
            d = int(np.searchsorted(self.main_offset, index, side="right") - 1)
            return f"{sp.slots[d]}={sp.variants[d][index - int(self.main_offset[d])]}"
        if index < self.n_static:
            p = int(np.searchsorted(self.pair_offset, index, side="right") - 1)
            a, b = (int(x) for x in self.pairs[p])
            v, w = divmod(index - int(self.pair_offset[p]), int(self.sizes[b]))
            return f"{sp.slots[a]}={sp.variants[a][v]} x {sp.slots[b]}={sp.variants[b][w]}"
        k, j = divmod(index - self.n_static, self.block_size)
        if j == 0:
            return f"context[{k}]"
        return f"context[{k}] x {self.describe(j)}"
