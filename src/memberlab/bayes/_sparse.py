"""A light sparse-row container for binary (or real) feature vectors.

scipy.sparse carries per-call overhead that dominates at the sizes served here (tens of
active features per row), so rows are kept as plain CSR arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._typing import FloatArray, IntArray

__all__ = ["SparseRows"]


@dataclass(frozen=True, slots=True)
class SparseRows:
    """Rows of a sparse design matrix in CSR form.

    Attributes
    ----------
    indptr : ndarray of shape (n_rows + 1,)
    indices : ndarray of shape (nnz,)
        Feature index of each stored value.
    data : ndarray of shape (nnz,)
        Feature value (1.0 for a binary feature).
    """

    indptr: IntArray
    indices: IntArray
    data: FloatArray

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @classmethod
    def from_lists(
        cls, rows: Sequence[Sequence[int]], values: Sequence[Sequence[float]] | None = None
    ) -> SparseRows:
        """Build from a list of index lists (binary features unless ``values`` given)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if len(rows) and indptr[-1] > 0
            else np.zeros(0, dtype=np.int64)
        )
        if values is None:
            data = np.ones(indices.shape[0], dtype=np.float64)
        else:
            if len(values) != len(rows):
                raise DataValidationError(
                    f"values has {len(values)} rows, rows has {len(rows)}; they must match."
                )
            data = (
                np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
                if indices.shape[0]
                else np.zeros(0, dtype=np.float64)
            )
            if data.shape != indices.shape:
                raise DataValidationError("each row of values must have the length of its indices.")
        return cls(indptr=indptr, indices=indices, data=data)

    @classmethod
    def from_dense(cls, X: FloatArray) -> SparseRows:
        """Build from a dense 2-D array, keeping the non-zero entries."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise DataValidationError(f"X.ndim == {X.ndim}, must be 2.")
        rows, cols = np.nonzero(X)
        indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=indptr[1:])
        return cls(indptr=indptr, indices=cols.astype(np.int64), data=X[rows, cols])

    def row(self, i: int) -> tuple[IntArray, FloatArray]:
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.data[a:b]

    def dot(self, w: FloatArray) -> FloatArray:
        """Row-wise inner products with ``w`` of shape (n_features,) or (n_draws, n_features)."""
        prod = self.data * w[..., self.indices]
        return _segment_sum(prod, self.indptr)

    def max_index(self) -> int:
        return int(self.indices.max()) if self.indices.shape[0] else -1


def _segment_sum(values: FloatArray, indptr: IntArray) -> FloatArray:
    """Sum ``values`` along the last axis within each CSR segment (empty segments give 0)."""
    csum = np.zeros((*values.shape[:-1], values.shape[-1] + 1), dtype=np.float64)
    np.cumsum(values, axis=-1, out=csum[..., 1:])
    return csum[..., indptr[1:]] - csum[..., indptr[:-1]]
