"""Batch scoring of a callout catalogue for a table of members: Parquet in, Parquet out.

One task per Parquet row group of the member table (so the split is fixed by the files,
and memory per task by the row-group size). Each task rebuilds the recommender from its
snapshot (:meth:`CalloutRecommender.to_bytes`, sent to each worker once), scores every
candidate for every member with :meth:`CalloutRecommender.click_rates` (posterior
predictive click rate and credible interval; no randomness, so the output is identical
on every backend) and writes one Parquet file. Tasks return only the path and row count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError

if TYPE_CHECKING:
    from memberlab.callouts import CalloutRecommender
    from memberlab.jobs._executor import Executor, Progress

__all__ = ["score_members"]


def _context(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in columns:
        v = row[c]
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        out[c] = v.item() if isinstance(v, np.generic) else v
    return out


def _score_group(
    shared: tuple[bytes, str, list[str], list[str] | None, int | None, float, str],
    task: tuple[int, str, int],
) -> tuple[str, int]:
    import pyarrow.parquet as pq

    from memberlab.callouts import CalloutRecommender

    snapshot, id_col, ctx_cols, candidates, top_k, level, out_dir = shared
    file_no, path, group = task
    rec = CalloutRecommender.from_bytes(snapshot)
    table = pq.ParquetFile(path).read_row_group(group, columns=[id_col, *ctx_cols])
    frame = table.to_pandas()
    parts = []
    for row in frame.to_dict("records"):
        rates = rec.click_rates(_context(row, ctx_cols), level, candidates=candidates)
        rates = rates.sort_values("mean", ascending=False, kind="stable")
        rates["rank"] = np.arange(1, len(rates) + 1)
        if top_k is not None:
            rates = rates.iloc[:top_k]
        rates.insert(0, id_col, row[id_col])
        parts.append(rates)
    cols = [id_col, "item_id", "mean", "lower", "upper", "rank"]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    target = Path(out_dir) / f"part-{file_no:05d}-{group:05d}.parquet"
    out.to_parquet(target, index=False)
    return str(target), len(out)


def score_members(
    recommender: CalloutRecommender,
    members: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    id_column: str = "member_id",
    context_columns: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    top_k: int | None = None,
    level: float = 0.95,
    executor: Executor | str | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Score the catalogue for every member of Parquet tables; write Parquet parts.

    Parameters
    ----------
    recommender : CalloutRecommender
    members : path or sequence of paths
        Parquet files (or directories of them) with one row per member: ``id_column``
        and the context columns (list columns are multi-valued context).
    out_dir : path
        Created; receives ``part-FFFFF-GGGGG.parquet`` (file, row group) with columns
        ``id_column, item_id, mean, lower, upper, rank``.
    id_column : str
    context_columns : sequence of str, optional
        Default: every column but ``id_column``.
    candidates : sequence of str, optional
        Items to score (default: every active item).
    top_k : int, optional
        Keep each member's ``top_k`` items by posterior mean click rate.
    level : float
        Credible level of ``lower`` and ``upper``.
    executor : Executor, {"serial", "processes", "ray"} or None
    progress : callable, optional

    Returns
    -------
    DataFrame with columns path, rows: the files written, in task order
    """
    import pyarrow.parquet as pq

    from memberlab.jobs._executor import Executor, get_executor
    from memberlab.jobs._ope import _expand

    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise DataValidationError(f"top_k == {top_k!r}, must be an integer >= 1 or None.")
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    files = _expand([members] if isinstance(members, str | os.PathLike) else members)
    tasks: list[tuple[int, str, int]] = []
    ctx_cols: list[str] | None = None if context_columns is None else list(context_columns)
    for k, f in enumerate(files):
        pf = pq.ParquetFile(f)
        names = list(pf.schema_arrow.names)
        if id_column not in names:
            raise DataValidationError(f"column {id_column!r} is missing in {f!r}; has {names}.")
        if ctx_cols is None:
            ctx_cols = [c for c in names if c != id_column]
        missing = [c for c in ctx_cols if c not in names]
        if missing:
            raise DataValidationError(f"context columns {missing} are missing in {f!r}.")
        tasks.extend((k, f, g) for g in range(pf.num_row_groups))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shared = (
        recommender.to_bytes(),
        id_column,
        ctx_cols or [],
        None if candidates is None else list(candidates),
        top_k,
        level,
        str(out),
    )
    ex = get_executor(executor)
    if isinstance(executor, Executor):
        done = ex.map(_score_group, tasks, shared=shared, desc="scoring", progress=progress)
    else:
        with ex:
            done = ex.map(_score_group, tasks, shared=shared, desc="scoring", progress=progress)
    return pd.DataFrame(done, columns=["path", "rows"])
