"""Logged bandit feedback for off-policy evaluation (in the spirit of obp's bandit feedback).

A :class:`BanditDataset` holds one row per served choice ("round" in obp's words): the
served action, its position in the ranked list, the reward, and the logging policy's
propensity of that action at that position. Contexts are kept twice: as the raw records
(for memberlab policies, which take dicts) and as a numeric design matrix (for reward
models). Three constructors: :meth:`BanditDataset.from_frame`,
:meth:`BanditDataset.from_export` (a ``memberlab logs export`` Parquet file) and
:func:`load_obd` (Open Bandit Dataset files, from a folder or from the ``obp`` wheel).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError, UnknownItemError
from memberlab._typing import FloatArray, IntArray

if TYPE_CHECKING:
    from memberlab.value import MemberValues

__all__ = [
    "OBD_BEHAVIORS",
    "OBD_CAMPAIGNS",
    "BanditDataset",
    "fetch_obd_wheel",
    "load_obd",
]

log = logging.getLogger(__name__)

OBD_BEHAVIORS = ("random", "bts")
OBD_CAMPAIGNS = ("all", "men", "women")
OBP_WHEEL = "obp-0.4.1-py3-none-any.whl"


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True, eq=False)
class BanditDataset:
    """Logged decisions with propensities, one row per served choice.

    Attributes
    ----------
    action : ndarray of int, shape (n_rounds,)
        Index into ``action_names`` of the served action.
    position : ndarray of int, shape (n_rounds,)
        Slot of the served action in its ranked list (0 = top).
    reward : ndarray of float, shape (n_rounds,)
    pscore : ndarray of float, shape (n_rounds,)
        Logging policy's probability of ``action`` at ``position``, in (0, 1].
    context : ndarray of float, shape (n_rounds, n_features)
        Numeric design of the contexts (one-hot for categories, as obp's pre-processing).
    action_names : tuple of str, length n_actions
    action_context : ndarray of float, shape (n_actions, n_action_features), optional
    feature_groups : dict of str to tuple of int
        Design columns of each context feature group (for leave-one-group-out).
    records : DataFrame
        The raw rows (context columns and identifiers: ``decision_id``, ``unit_id``,
        ``timestamp``, ``candidates``, ``context`` as JSON ...).
    len_list : int
        Positions per decision.
    meta : dict
        Provenance (``source``, item catalogue of an export, ...).
    """

    action: IntArray
    position: IntArray
    reward: FloatArray
    pscore: FloatArray
    context: FloatArray
    action_names: tuple[str, ...]
    records: pd.DataFrame
    len_list: int = 1
    action_context: FloatArray | None = None
    feature_groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ basics
    @property
    def n_rounds(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_actions(self) -> int:
        return len(self.action_names)

    def __len__(self) -> int:
        return self.n_rounds

    def __repr__(self) -> str:
        return (
            f"BanditDataset(n_rounds={self.n_rounds}, n_actions={self.n_actions}, "
            f"len_list={self.len_list}, source={self.meta.get('source', '?')!r})"
        )

    def validate(self) -> None:
        """Check shapes and values; errors name the column and the first bad row."""
        n = self.reward.shape[0]
        names = {"action": "action", "position": "position", "reward": "reward"}
        names |= {"propensity": "propensity", **self.meta.get("columns", {})}
        cols = {
            "action": self.action,
            "position": self.position,
            "reward": self.reward,
            "propensity": self.pscore,
        }
        for name, a in cols.items():
            if a.ndim != 1 or a.shape[0] != n:
                raise DataValidationError(
                    f"column {name!r} has shape {a.shape}, must be ({n},) like 'reward'."
                )
        if n == 0:
            raise DataValidationError("the dataset is empty; need at least one logged decision.")
        bad = ~np.isfinite(self.reward)
        if bad.any():
            i = _first_bad(bad)
            raise DataValidationError(
                f"column {names['reward']!r} row {i}: {float(self.reward[i])}, must be finite."
            )
        bad = ~((self.pscore > 0) & (self.pscore <= 1))  # also catches NaN
        if bad.any():
            i = _first_bad(bad)
            raise DataValidationError(
                f"column {names['propensity']!r} row {i}: {float(self.pscore[i])}, "
                "must be in (0, 1]."
            )
        bad = (self.action < 0) | (self.action >= self.n_actions)
        if bad.any():
            i = _first_bad(bad)
            raise DataValidationError(
                f"column {names['action']!r} row {i}: index {self.action[i]}, must be in "
                f"[0, {self.n_actions}) (the known actions)."
            )
        if not self.len_list >= 1:
            raise DataValidationError(f"len_list == {self.len_list}, must be >= 1.")
        bad = (self.position < 0) | (self.position >= self.len_list)
        if bad.any():
            i = _first_bad(bad)
            raise DataValidationError(
                f"column {names['position']!r} row {i}: {self.position[i]}, must be in "
                f"[0, {self.len_list}) (len_list == {self.len_list})."
            )
        if self.context.ndim != 2 or self.context.shape[0] != n:
            raise DataValidationError(
                f"context has shape {self.context.shape}, must be ({n}, n_features)."
            )
        if "decision_id" in self.records.columns:
            key = pd.DataFrame({"d": self.records["decision_id"].to_numpy(), "p": self.position})
            dup = key.duplicated().to_numpy()
            if dup.any():
                i = _first_bad(dup)
                raise DataValidationError(
                    f"column {names['position']!r} row {i}: decision {key['d'].iloc[i]!r} "
                    f"has position {self.position[i]} twice; positions must be distinct "
                    "within a decision."
                )

    def contexts(self) -> list[dict[str, Any]]:
        """The raw context of each round as a dict (JSON column of an export, else the
        context columns of the records)."""
        if "context" in self.records.columns:
            return [
                json.loads(c) if isinstance(c, str) else dict(c) for c in self.records["context"]
            ]
        cols = list(self.meta.get("context_columns", []))
        return self.records[cols].to_dict(orient="records")  # type: ignore[return-value]

    def candidates(self) -> list[list[str]] | None:
        """Each round's candidate action names, when logged."""
        if "candidates" not in self.records.columns:
            return None
        return [list(c) for c in self.records["candidates"]]

    def subset(self, rows: np.ndarray | slice) -> BanditDataset:
        """The rows selected by a boolean mask, an index array or a slice."""
        idx = np.arange(self.n_rounds)[rows]
        return BanditDataset(
            action=self.action[idx],
            position=self.position[idx],
            reward=self.reward[idx],
            pscore=self.pscore[idx],
            context=self.context[idx],
            action_names=self.action_names,
            records=self.records.iloc[idx].reset_index(drop=True),
            len_list=self.len_list,
            action_context=self.action_context,
            feature_groups=self.feature_groups,
            meta=self.meta,
        )

    def drop_feature_group(self, group: str) -> BanditDataset:
        """A copy whose design matrix lacks the columns of ``group``."""
        if group not in self.feature_groups:
            raise UnknownItemError(
                f"feature group {group!r} is unknown; groups are {sorted(self.feature_groups)}."
            )
        drop = set(self.feature_groups[group])
        keep = [j for j in range(self.context.shape[1]) if j not in drop]
        remap = {old: new for new, old in enumerate(keep)}
        groups = {
            g: tuple(remap[j] for j in cols)
            for g, cols in self.feature_groups.items()
            if g != group
        }
        meta = dict(self.meta)
        meta["dropped_group"] = group
        return BanditDataset(
            action=self.action,
            position=self.position,
            reward=self.reward,
            pscore=self.pscore,
            context=self.context[:, keep],
            action_names=self.action_names,
            records=self.records,
            len_list=self.len_list,
            action_context=self.action_context,
            feature_groups=groups,
            meta=meta,
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        action: str = "action",
        reward: str = "reward",
        propensity: str = "propensity",
        position: str | None = None,
        context: Sequence[str] | None = None,
        actions: Sequence[Any] | None = None,
        len_list: int | None = None,
        action_context: pd.DataFrame | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> BanditDataset:
        """Build from a DataFrame with one row per served choice.

        Parameters
        ----------
        frame : DataFrame
        action, reward, propensity : str
            Column names of the served action (any hashable labels), the reward and the
            logging propensity.
        position : str, optional
            Column of the 0-based slot (default: every row is slot 0).
        context : list of str, optional
            Context columns (default: none). Numeric columns enter the design as they
            are, others one-hot (list values multi-hot); each column is one feature group.
        actions : sequence, optional
            Every action label in index order (default: sorted labels seen).
        len_list : int, optional
            Positions per decision (default: largest position + 1).
        action_context : DataFrame, optional
            One row per action (index = action label) of numeric action features.
        """
        for col in [action, reward, propensity] + ([position] if position else []):
            if col not in frame.columns:
                raise DataValidationError(
                    f"column {col!r} is missing; columns are {list(frame.columns)}."
                )
        context = list(context or [])
        for col in context:
            if col not in frame.columns:
                raise DataValidationError(
                    f"context column {col!r} is missing; columns are {list(frame.columns)}."
                )
        labels = frame[action].to_numpy()
        names = sorted({str(a) for a in labels}) if actions is None else [str(a) for a in actions]
        lookup = {a: j for j, a in enumerate(names)}
        act = np.empty(len(frame), dtype=np.int64)
        for i, a in enumerate(labels):
            j = lookup.get(str(a))
            if j is None:
                raise DataValidationError(
                    f"column {action!r} row {i}: {a!r} is not one of the {len(names)} actions."
                )
            act[i] = j
        r = _numeric(frame, reward)
        p = _numeric(frame, propensity)
        if position is None:
            pos = np.zeros(len(frame), dtype=np.int64)
        else:
            posf = _numeric(frame, position)
            bad = ~np.isfinite(posf) | (posf != np.round(posf))
            if bad.any():
                i = _first_bad(bad)
                raise DataValidationError(
                    f"column {position!r} row {i}: {float(posf[i])}, must be a whole number."
                )
            pos = posf.astype(np.int64)
        L = int(len_list) if len_list is not None else int(pos.max(initial=0)) + 1
        design, groups = _design(frame, context)
        ac: FloatArray | None = None
        if action_context is not None:
            acf = action_context.reindex([str(a) for a in names])
            if acf.isna().any().any():
                missing = [a for a, row in acf.iterrows() if row.isna().any()]
                raise DataValidationError(f"action_context lacks actions {missing[:5]}.")
            ac = acf.to_numpy(dtype=np.float64)
        columns = {"action": action, "reward": reward, "propensity": propensity}
        if position is not None:
            columns["position"] = position
        m = {"source": "frame", "context_columns": context, "columns": columns, **(meta or {})}
        return cls(
            action=act,
            position=pos,
            reward=r,
            pscore=p,
            context=design,
            action_names=tuple(names),
            records=frame.reset_index(drop=True),
            len_list=L,
            action_context=ac,
            feature_groups=groups,
            meta=m,
        )

    @classmethod
    def from_export(
        cls,
        path: str | os.PathLike[str],
        *,
        include_pending: bool = False,
        values: MemberValues | None = None,
    ) -> BanditDataset:
        """Build from a ``memberlab logs export`` Parquet file (closed rows only, unless
        ``include_pending``).

        Context columns are the export's ``ctx.*`` columns; the actions are every item
        seen as served or as a candidate; the item catalogue stored in the file's
        metadata is kept in ``meta["items"]``.

        With ``values`` (:class:`memberlab.value.MemberValues`) the reward is member value:
        the value of the plan each impression converted to (the export's ``plan``
        column, an export of ``--kind value``) in the shopper's state (the ``ctx.*``
        columns of the choice model's state columns), 0 without a conversion; so the
        estimators evaluate a value policy. ``meta["reward"]`` says which.
        """
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        frame = pf.read().to_pandas()
        raw_meta = pf.schema_arrow.metadata or {}
        meta: dict[str, Any] = {"source": "export", "path": str(path)}
        if b"memberlab" in raw_meta:
            meta.update(json.loads(raw_meta[b"memberlab"]))
        if not include_pending:
            frame = frame[frame["status"] == "closed"]
        if "ts" in frame.columns:  # the export is in key order; rounds go in time order
            frame = frame.sort_values(["ts", "decision_id", "position"], kind="stable")
        frame = frame.reset_index(drop=True)
        if frame.empty:
            raise DataValidationError(
                f"{path} has no closed rows to evaluate (status 'closed'); wait for the "
                "attribution windows to close or pass include_pending."
            )
        served = frame["item"].astype(str)
        names = set(served)
        if "candidates" in frame.columns:
            for c in frame["candidates"]:
                if c is not None:
                    names.update(str(x) for x in c)
        ctx = sorted(c for c in frame.columns if c.startswith("ctx."))
        meta["reward"] = "click"
        if values is not None:
            frame = frame.assign(reward=_value_rewards(frame, values, path))
            meta["reward"] = "value"
        ds = cls.from_frame(
            frame,
            action="item",
            reward="reward",
            propensity="propensity",
            position="position",
            context=ctx,
            actions=sorted(names),
            len_list=int(meta.get("len_list", 0)) or None,
            meta=meta,
        )
        return ds


def _value_rewards(frame: pd.DataFrame, values: MemberValues, path: Any) -> FloatArray:
    """Member value of each row's converted plan in its state (0 without conversion)."""
    if "plan" not in frame.columns:
        raise DataValidationError(
            f"{path} has no 'plan' column: export the value objective's decisions "
            "(memberlab logs export --kind value) to evaluate with member value."
        )
    missing = [c for c in values.state_cols if f"ctx.{c}" not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{path} has no context column {'ctx.' + missing[0]!r}: the choice model's state "
            f"columns {values.state_cols} must be in the logged contexts."
        )
    plans = [None if p is None or p != p else str(p) for p in frame["plan"]]
    out = np.zeros(len(frame))
    hit = np.flatnonzero([p is not None for p in plans])
    if hit.size:  # only converted rows need their state looked up
        cols = [f"ctx.{c}" for c in values.state_cols]
        states = frame.iloc[hit][cols].set_axis(values.state_cols, axis=1)
        out[hit] = values.conversion_values(states, [plans[i] for i in hit])
    return out


def _numeric(frame: pd.DataFrame, col: str) -> FloatArray:
    try:
        return pd.to_numeric(frame[col], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        vals = pd.to_numeric(frame[col], errors="coerce")
        i = int(np.flatnonzero(vals.isna().to_numpy() & frame[col].notna().to_numpy())[0])
        raise DataValidationError(
            f"column {col!r} row {i}: {frame[col].iloc[i]!r}, must be a number."
        ) from None


def _design(
    frame: pd.DataFrame, columns: Sequence[str]
) -> tuple[FloatArray, dict[str, tuple[int, ...]]]:
    blocks: list[FloatArray] = []
    groups: dict[str, tuple[int, ...]] = {}
    width = 0
    n = len(frame)
    for col in columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s):
            block = s.to_numpy(dtype=np.float64)[:, None]
        elif pd.api.types.is_numeric_dtype(s):
            block = s.to_numpy(dtype=np.float64)[:, None]
            block = np.where(np.isfinite(block), block, 0.0)
        else:
            vals: list[list[str]] = []
            for v in s:
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    vals.append([])
                elif isinstance(v, list | tuple | np.ndarray):
                    vals.append([str(x) for x in v])
                else:
                    vals.append([str(v)])
            levels = sorted({x for vs in vals for x in vs})
            # drop the first level (as obp's pd.get_dummies(drop_first=True)) for scalars
            pos = {lv: j for j, lv in enumerate(levels)}
            block = np.zeros((n, len(levels)))
            for i, vs in enumerate(vals):
                for x in vs:
                    block[i, pos[x]] = 1.0
            if block.shape[1] > 1 and np.all(block.sum(1) == 1):
                block = block[:, 1:]
        blocks.append(block)
        groups[str(col)] = tuple(range(width, width + block.shape[1]))
        width += block.shape[1]
    design = np.hstack(blocks) if blocks else np.zeros((n, 0))
    return design, groups


# ---------------------------------------------------------------------- Open Bandit Dataset


def fetch_obd_wheel(cache_dir: str | os.PathLike[str], *, timeout: float = 300.0) -> Path:
    """The ``obp==0.4.1`` wheel (which carries the 10,000-row OBD samples) in
    ``cache_dir``, downloaded with ``pip download`` when not there yet.

    Raises
    ------
    FileNotFoundError
        When pip cannot fetch it (no registry); the message carries pip's output.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / OBP_WHEEL
    if wheel.exists():
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "obp==0.4.1", "--no-deps", "-d", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not wheel.exists():
        raise FileNotFoundError(
            f"could not download {OBP_WHEEL} with {' '.join(cmd)!r}: "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    return wheel


def _obd_reader(path: Path, behavior: str, campaign: str) -> tuple[Any, Any]:
    """Open the log and item-context CSV of one behaviour/campaign from a folder or wheel."""
    rel = f"{behavior}/{campaign}"
    if path.is_file() and zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        base = "obp/dataset/obd/"
        names = set(zf.namelist())
        log_name, ctx_name = f"{base}{rel}/{campaign}.csv", f"{base}{rel}/item_context.csv"
        if log_name not in names:
            raise FileNotFoundError(f"{log_name} is not in {path}.")
        return io.BytesIO(zf.read(log_name)), io.BytesIO(zf.read(ctx_name))
    folder = path / rel
    if not (folder / f"{campaign}.csv").exists() and (path / "obd" / rel).exists():
        folder = path / "obd" / rel
    log_path = folder / f"{campaign}.csv"
    if not log_path.exists():
        raise FileNotFoundError(
            f"{log_path} does not exist; PATH must be the obd folder holding "
            "{behavior}/{campaign}/{campaign}.csv, or the obp wheel."
        )
    return log_path, folder / "item_context.csv"


def load_obd(
    path: str | os.PathLike[str], *, behavior: str = "random", campaign: str = "all"
) -> BanditDataset:
    """Open Bandit Dataset logs (Saito et al., 2021) as a :class:`BanditDataset`.

    Parameters
    ----------
    path : path
        The ``obd`` folder (holding ``{behavior}/{campaign}/{campaign}.csv`` and
        ``item_context.csv``), or the ``obp`` wheel itself (read as a zip; obp is not
        imported).
    behavior : {"random", "bts"}
    campaign : {"all", "men", "women"}

    Notes
    -----
    The design follows obp's ``OpenBanditDataset.pre_process``: ``user_feature_*`` one-hot
    with the first level dropped, then the ``user-item_affinity_*`` columns as numbers;
    the action context is ``item_feature_0`` as a number and the other item features
    one-hot. Positions are the dataset's 1-based ``position`` minus one; ``len_list`` is 3.
    """
    if behavior not in OBD_BEHAVIORS:
        raise DataValidationError(f"behavior == {behavior!r}, must be one of {OBD_BEHAVIORS}.")
    if campaign not in OBD_CAMPAIGNS:
        raise DataValidationError(f"campaign == {campaign!r}, must be one of {OBD_CAMPAIGNS}.")
    log_src, ctx_src = _obd_reader(Path(path), behavior, campaign)
    data = pd.read_csv(log_src, index_col=0)
    item_ctx = pd.read_csv(ctx_src, index_col=0)
    need = ["timestamp", "item_id", "position", "click", "propensity_score"]
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise DataValidationError(f"OBD log lacks columns {missing}; it has {list(data.columns)}.")
    user_cols = [c for c in data.columns if c.startswith("user_feature")]
    aff_cols = [c for c in data.columns if c.startswith("user-item_affinity")]
    n_actions = int(data["item_id"].max()) + 1
    dummies = pd.get_dummies(data[user_cols], drop_first=True)
    groups: dict[str, tuple[int, ...]] = {}
    for col in user_cols:
        groups[col] = tuple(
            j for j, name in enumerate(dummies.columns) if str(name).startswith(col + "_")
        )
    width = dummies.shape[1]
    groups["user-item_affinity"] = tuple(range(width, width + len(aff_cols)))
    design = np.c_[dummies.to_numpy(dtype=np.float64), data[aff_cols].to_numpy(dtype=np.float64)]
    item_ctx = item_ctx.set_index("item_id").sort_index()
    ac_num = item_ctx[["item_feature_0"]].to_numpy(dtype=np.float64)
    ac_cat = pd.get_dummies(item_ctx.drop(columns=["item_feature_0"]), drop_first=True)
    action_context = np.c_[ac_num, ac_cat.to_numpy(dtype=np.float64)]
    records = data[["timestamp", "item_id", "position", "click", "propensity_score", *user_cols]]
    return BanditDataset(
        action=data["item_id"].to_numpy(dtype=np.int64),
        position=data["position"].to_numpy(dtype=np.int64) - 1,
        reward=data["click"].to_numpy(dtype=np.float64),
        pscore=data["propensity_score"].to_numpy(dtype=np.float64),
        context=design,
        action_names=tuple(str(a) for a in range(n_actions)),
        records=records.reset_index(drop=True),
        len_list=3,
        action_context=action_context,
        feature_groups=groups,
        meta={
            "source": "obd",
            "behavior": behavior,
            "campaign": campaign,
            "path": str(path),
            "context_columns": user_cols,
        },
    )
