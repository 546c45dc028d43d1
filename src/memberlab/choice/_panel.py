"""Member panels: one row per member and period, validated and encoded.

A panel holds, per row, a member id, a period (consecutive integers within a member), the
state columns, the action taken and, optionally, the feasible actions (for example
annual members locked in until the term ends). Rows become decisions on a discrete state
space: the distinct combinations of the state columns.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memberlab._errors import AnchorSupportError, DataValidationError
from memberlab._typing import BoolArray, FloatArray, IntArray

__all__ = ["Panel", "apply_bins", "estimate_transitions", "read_panel"]

FeasibleSpec = str | Callable[[pd.DataFrame], Any] | None
FEASIBLE_SEP = "|"
#: a float state column with more distinct non-integer values than this is continuous
MAX_FLOAT_LEVELS = 20
#: dense arrays of the tabular estimators (transitions) beyond this many bytes are refused
MAX_DENSE_BYTES = 2 * 1024**3
#: an inferred action seen in at most this many rows (and under 1% of rows) is a typo
RARE_ACTION_ROWS = 3


def _row(df: pd.DataFrame, i: int) -> Any:
    return _py(df.index[i])


def _numeric_or_fail(col: pd.Series, name: str) -> pd.Series:
    """A text column whose values are almost all numbers: name the first one that is not."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col
    num = pd.to_numeric(col, errors="coerce")
    ok = num.notna().to_numpy()
    if ok.mean() >= 0.9 and not ok.all():
        i = int(np.argmax(~ok))
        raise DataValidationError(
            f"column {name!r} holds numbers except {_py(col.iloc[i])!r} at row "
            f"{_py(col.index[i])!r} ({int((~ok).sum())} non-numeric value(s)); fix the value "
            "or make the column text throughout."
        )
    return col


def _periods(col: pd.Series, name: str) -> np.ndarray:
    """Integer periods; dates and ``YYYY-MM`` strings become month numbers."""
    if pd.api.types.is_integer_dtype(col):
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(col):
        v = col.to_numpy(dtype=float)
        if np.all(v == np.round(v)):
            return v.astype(np.int64)
    if pd.api.types.is_datetime64_any_dtype(col):
        dt = pd.DatetimeIndex(col)
    elif pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col):
        text = col.astype(str)
        dt = None
        best: Any = None
        for fmt in ("%Y-%m", "%Y-%m-%d", "%Y/%m", "%Y%m"):
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
            if parsed.notna().all():
                dt = pd.DatetimeIndex(parsed)
                break
            if best is None or parsed.notna().sum() > best.notna().sum():
                best = parsed
        if dt is None:
            num = pd.to_numeric(text, errors="coerce")
            if num.notna().sum() >= best.notna().sum():
                best = num
            bad = best.isna().to_numpy()
            i = int(np.argmax(bad))
            raise DataValidationError(
                f"column {name!r} must hold integer periods or dates such as '2024-01', got "
                f"{_py(col.iloc[i])!r} at row {_py(col.index[i])!r}."
            )
    else:
        raise DataValidationError(
            f"column {name!r} must hold integer periods or dates, got dtype {col.dtype}."
        )
    if dt is None:  # pragma: no cover - every branch above sets it or raises
        raise DataValidationError(f"column {name!r}: periods could not be read.")
    if (dt.day != 1).any() and (pd.Series(dt.day).nunique() > 1):
        raise DataValidationError(
            f"column {name!r} holds dates on different days of the month; periods are "
            "months, give one date per month (e.g. '2024-01')."
        )
    return np.asarray(dt.year * 12 + dt.month - 1, dtype=np.int64)


def _quantile_bins(col: pd.Series, n: int, name: str) -> tuple[list[float], list[float]]:
    """Quantile bin edges (``n`` bins, fewer where quantiles tie) and each bin's mean."""
    v = col.to_numpy(dtype=float)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, n + 1)))
    if len(edges) < 2:
        edges = np.array([v.min(), v.max()])
    code = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    means = [
        float(v[code == k].mean()) if (code == k).any() else float(edges[k])
        for k in range(len(edges) - 1)
    ]
    return [float(e) for e in edges], means


def apply_bins(values: Any, spec: dict[str, list[float]]) -> FloatArray:
    """Map values to their quantile bin's value (the fitted bin's mean).

    ``spec`` holds ``edges`` (n_bins + 1) and ``values`` (n_bins), as recorded in
    :attr:`Panel.bins` and in ``ChoiceResults.info["bins"]``. Values outside the fitted
    range fall into the first or last bin.
    """
    v = np.asarray(values, dtype=float)
    edges = np.asarray(spec["edges"], dtype=float)
    code = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    return np.asarray(spec["values"], dtype=float)[code]


def _py(v: Any) -> Any:
    """A numpy scalar as a plain Python value, for readable messages."""
    return v.item() if isinstance(v, np.generic) else v


def read_panel(path: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Read a panel from CSV or Parquet (by extension); a DataFrame is returned as is.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DataValidationError
        If the extension is neither ``.csv`` nor ``.parquet``/``.pq``, or the file (or
        frame) is empty or has no rows.
    """
    if isinstance(path, pd.DataFrame):
        if len(path) == 0:
            raise DataValidationError(f"the panel has no rows (columns {list(path.columns)}).")
        return path
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"panel file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        try:
            frame = pd.read_csv(p)
        except pd.errors.EmptyDataError:
            raise DataValidationError(
                f"panel file {str(p)!r} is empty (no header, no rows)."
            ) from None
    elif suffix in (".parquet", ".pq"):
        if p.stat().st_size == 0:
            raise DataValidationError(f"panel file {str(p)!r} is empty (0 bytes).")
        frame = pd.read_parquet(p)
    else:
        raise DataValidationError(
            f"panel file {str(p)!r} has extension {suffix!r}, must be .csv, .parquet or .pq."
        )
    if len(frame) == 0:
        raise DataValidationError(
            f"panel file {str(p)!r} has no rows (only the header: {list(frame.columns)})."
        )
    return frame


@dataclass(frozen=True)
class Panel:
    """A validated member panel encoded on a discrete state space.

    Attributes
    ----------
    id_col, time_col, action_col : str
    state_cols : tuple of str
    actions : tuple
        Action labels; ``action`` codes index into it.
    states : DataFrame of shape (n_states, n_state_cols)
        The distinct observed states; ``state`` codes index its rows.
    member : ndarray of int, shape (n_obs,)
        Member code (0..n_members-1), rows sorted by member and period.
    period : ndarray of int, shape (n_obs,)
    state : ndarray of int, shape (n_obs,)
    action : ndarray of int, shape (n_obs,)
    next_state : ndarray of int, shape (n_obs,)
        State of the member's next row, ``-1`` in a member's last row.
    feasible : ndarray of bool, shape (n_states, n_actions)
    member_ids : ndarray of shape (n_members,)
        Original member ids.
    """

    id_col: str
    time_col: str
    state_cols: tuple[str, ...]
    action_col: str
    actions: tuple[Any, ...]
    states: pd.DataFrame
    member: IntArray
    period: IntArray
    state: IntArray
    action: IntArray
    next_state: IntArray
    feasible: BoolArray
    member_ids: Any
    bins: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"<Panel: {self.n_obs:,} decisions of {self.n_members:,} members on "
            f"{self.n_states:,} states ({', '.join(self.state_cols)}), actions "
            f"{list(self.actions)}>"
        )

    @property
    def n_obs(self) -> int:
        return len(self.state)

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def n_members(self) -> int:
        return len(self.member_ids)

    def action_index(self, label: Any) -> int:
        """Code of an action label; raises :class:`DataValidationError` if unknown."""
        for i, a in enumerate(self.actions):
            if a == label or str(a) == str(label):
                return i
        raise DataValidationError(
            f"action {label!r} is not among the panel's actions {list(self.actions)}."
        )

    def counts(self) -> FloatArray:
        """Decision counts, shape (n_states, n_actions)."""
        c = np.zeros((self.n_states, self.n_actions))
        np.add.at(c, (self.state, self.action), 1.0)
        return c

    def state_features(self) -> FloatArray:
        """The state table as floats, shape (n_states, n_features).

        Numeric columns are kept; other columns (strings, categories) are one-hot coded.
        """
        parts = []
        for c in self.state_cols:
            col = self.states[c]
            if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                parts.append(col.to_numpy(dtype=float)[:, None])
            else:
                parts.append(pd.get_dummies(col.astype(str)).to_numpy(dtype=float))
        return np.concatenate(parts, axis=1)

    def first_states(self) -> IntArray:
        """State code of each member's first row, shape (n_members,)."""
        first = np.ones(self.n_obs, dtype=bool)
        first[1:] = self.member[1:] != self.member[:-1]
        return self.state[first]

    def check_anchor(self, anchor: Any) -> int:
        """Code of the anchor action; raises :class:`AnchorSupportError` if never observed."""
        a0 = self.action_index(anchor)
        if not (self.action == a0).any():
            raise AnchorSupportError(
                f"anchor action {anchor!r} is never observed in column "
                f"{self.action_col!r}; choose an observed anchor."
            )
        return a0

    def resample(self, rng: np.random.Generator) -> Panel:
        """A bootstrap panel: members drawn with replacement (new ids 0..n-1)."""
        n = self.n_members
        draw = rng.integers(0, n, size=n)
        starts = np.searchsorted(self.member, np.arange(n), side="left")
        ends = np.searchsorted(self.member, np.arange(n), side="right")
        idx = np.concatenate([np.arange(starts[m], ends[m]) for m in draw])
        lengths = ends[draw] - starts[draw]
        new_member = np.repeat(np.arange(n), lengths)
        nxt = self.next_state[idx]
        return Panel(
            self.id_col,
            self.time_col,
            self.state_cols,
            self.action_col,
            self.actions,
            self.states,
            new_member,
            self.period[idx],
            self.state[idx],
            self.action[idx],
            nxt,
            self.feasible,
            np.arange(n),
            self.bins,
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        id: str,
        time: str,
        state: str | Sequence[str],
        action: str,
        actions: Sequence[Any] | None = None,
        feasible: FeasibleSpec = None,
        bins: Mapping[str, int] | None = None,
        continuous: Sequence[str] = (),
    ) -> Panel:
        """Validate and encode a panel.

        Parameters
        ----------
        frame : DataFrame
            One row per member and period.
        id, time, action : str
            Column names of the member id, the period and the action. Periods are
            consecutive integers within a member, or months given as dates or
            ``YYYY-MM`` strings (``2024-01``).
        state : str or sequence of str
            State column(s); their distinct combinations are the states.
        actions : sequence, optional
            Allowed action labels (their order is the action order). By default the
            sorted distinct values of the action column; a value seen in at most 3 rows
            (and under 1% of rows) is then refused as a likely typo.
        feasible : str or callable, optional
            Feasible actions: the name of a column holding ``"|"``-separated feasible
            action labels per row, or a function of the state table returning a boolean
            array of shape (n_states, n_actions). By default every action is feasible.
        bins : mapping, optional
            ``{column: n}``: cut a numeric state column into ``n`` quantile bins (fewer
            where quantiles tie); each value becomes its bin's mean. The edges are kept in
            :attr:`bins` and applied to new data by :func:`apply_bins`.
        continuous : sequence of str
            Float state columns to keep as they are although they look continuous (for
            function-approximation PQR); tabular estimators refuse such panels by size.

        Raises
        ------
        DataValidationError
            Naming the column, value and row: missing columns or values, an empty panel,
            the id, period or action column given as a state, a continuous state column
            (more than 20 distinct non-integer values; bin it), one non-numeric value in
            a numeric column, duplicate or non-consecutive periods, unknown or rare
            (typo) actions, actions infeasible in their state.
        """
        if not isinstance(frame, pd.DataFrame):
            raise DataValidationError(f"panel must be a pandas DataFrame, got {type(frame)}.")
        state_cols = (state,) if isinstance(state, str) else tuple(state)
        if not state_cols:
            raise DataValidationError("state must name at least one column.")
        roles = {id: "member id", time: "period", action: "action"}
        if isinstance(feasible, str):
            roles.setdefault(feasible, "feasibility")
        for c in state_cols:
            if c in roles:
                raise DataValidationError(
                    f"state column {c!r} is the {roles[c]} column; a state column describes "
                    "the member's situation, give the others."
                )
        dup = sorted({c for c in state_cols if state_cols.count(c) > 1})
        if dup:
            raise DataValidationError(f"state column(s) {dup} given more than once.")
        need = [id, time, *state_cols, action]
        if isinstance(feasible, str):
            need.append(feasible)
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"column(s) {missing} not in the panel; columns are {list(frame.columns)}."
            )
        if len(frame) == 0:
            raise DataValidationError(f"the panel has no rows (columns {list(frame.columns)}).")
        for c in need:
            na = frame[c].isna().to_numpy()
            if na.any():
                row = frame.index[int(np.argmax(na))]
                raise DataValidationError(
                    f"missing value in column {c!r} at row {_py(row)!r} ({int(na.sum())} missing)."
                )
        bins = dict(bins or {})
        for c, n in bins.items():
            if c not in state_cols:
                raise DataValidationError(
                    f"bins names column {c!r}, which is not a state column {list(state_cols)}."
                )
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
                raise DataValidationError(f"bins[{c!r}] == {n!r}, must be an integer >= 2.")
        frame = frame.copy()
        bin_spec: dict[str, dict[str, list[float]]] = {}
        for c in state_cols:
            frame[c] = _numeric_or_fail(frame[c], c)
            col = frame[c]
            if c in bins:
                if not pd.api.types.is_numeric_dtype(col):
                    raise DataValidationError(
                        f"bins[{c!r}]: column {c!r} is not numeric (dtype {col.dtype})."
                    )
                edges, means = _quantile_bins(col, int(bins[c]), c)
                bin_spec[c] = {"edges": edges, "values": means}
                frame[c] = apply_bins(col.to_numpy(dtype=float), bin_spec[c])
                continue
            if c in continuous or not pd.api.types.is_float_dtype(col):
                continue
            v = col.to_numpy(dtype=float)
            frac = v != np.round(v)
            n_levels = int(pd.unique(v).size)
            if frac.any() and n_levels > MAX_FLOAT_LEVELS:
                raise DataValidationError(
                    f"state column {c!r} looks continuous ({n_levels:,} distinct values in "
                    f"{len(v):,} rows, e.g. {_py(v[int(np.argmax(frac))])!r}); every distinct "
                    f"value is its own state. Bin it into quantiles with bins={{{c!r}: 5}} "
                    f"(command line: --bins {c}=5), or declare it continuous={[c]!r} for "
                    "function-approximation PQR."
                )
        df = frame.sort_values([id, time], kind="stable")
        ids = df[id].to_numpy()
        t = _periods(df[time], time)
        same = ids[1:] == ids[:-1]
        step = np.diff(t.astype(np.int64))
        bad = np.flatnonzero(same & (step != 1))
        if len(bad):
            i = bad[0]
            kind = "duplicate" if step[i] == 0 else "gap in"
            raise DataValidationError(
                f"{kind} periods in column {time!r} for member {_py(ids[i + 1])!r}: "
                f"{_py(t[i])} then {_py(t[i + 1])} (row {_py(df.index[i + 1])!r}); periods "
                "must be consecutive."
            )
        act_values = df[action].to_numpy()
        if actions is None:
            labels = tuple(sorted(pd.unique(act_values).tolist(), key=str))
            vc = df[action].value_counts()
            for lab, n in vc.items():
                if n <= RARE_ACTION_ROWS and 100 * n < len(df):
                    i = int(np.argmax((df[action] == lab).to_numpy()))
                    raise DataValidationError(
                        f"action {_py(lab)!r} in column {action!r} occurs in only {int(n)} of "
                        f"{len(df):,} rows (first at row {_row(df, i)!r}); a typo? Give the "
                        f"allowed actions with actions=[...] (command line: --actions "
                        f"{','.join(str(x) for x in vc.index if vc[x] > RARE_ACTION_ROWS)}) "
                        "to refuse it, or include it there to keep it."
                    )
        else:
            labels = tuple(actions)
        lookup = {a: i for i, a in enumerate(labels)}
        raw_codes, raw_uniques = pd.factorize(df[action])
        to_label = np.array([lookup.get(a, -1) for a in raw_uniques], dtype=np.int64)
        codes = to_label[np.asarray(raw_codes, dtype=np.int64)]
        if (codes < 0).any():
            i = int(np.argmax(codes < 0))
            raise DataValidationError(
                f"unknown action {_py(act_values[i])!r} in column {action!r} at row "
                f"{_py(df.index[i])!r}; allowed actions are {list(labels)}."
            )
        keys = df[list(state_cols)]
        # factorize each column, combine the codes into one integer key, factorize that
        combined = np.zeros(len(df), dtype=np.int64)
        for c in state_cols:
            col_codes, col_uniques = pd.factorize(keys[c])
            combined = combined * (len(col_uniques) + 1) + np.asarray(col_codes, np.int64)
            combined, _ = pd.factorize(combined)
            combined = np.asarray(combined, dtype=np.int64)
        state_codes = combined
        first = np.unique(state_codes, return_index=True)[1]
        states = keys.iloc[first].reset_index(drop=True)
        n_states = len(states)
        n_actions = len(labels)
        if feasible is None:
            feas = np.ones((n_states, n_actions), dtype=bool)
        elif isinstance(feasible, str):
            feas = np.zeros((n_states, n_actions), dtype=bool)
            text_codes, texts = pd.factorize(df[feasible].astype(str))
            text_codes = np.asarray(text_codes, dtype=np.int64)
            masks = np.zeros((len(texts), n_actions), dtype=bool)
            for u, text in enumerate(texts):
                for lab in str(text).split(FEASIBLE_SEP):
                    k = lookup.get(lab)
                    if k is None:
                        k = next((i for i, a in enumerate(labels) if str(a) == lab), None)
                    if k is None:
                        j = int(np.argmax(text_codes == u))
                        raise DataValidationError(
                            f"unknown action {lab!r} in feasibility column {feasible!r} at "
                            f"row {_py(df.index[j])!r}; allowed actions are {list(labels)}."
                        )
                    masks[u, k] = True
            row_feas = masks[text_codes]
            row_ok = row_feas[np.arange(len(df)), codes]
            if not row_ok.all():
                i = int(np.argmax(~row_ok))
                raise DataValidationError(
                    f"action {_py(act_values[i])!r} (column {action!r}) is infeasible in its "
                    f"row's feasible set {df[feasible].iloc[i]!r} (column {feasible!r}) at row "
                    f"{_py(df.index[i])!r}."
                )
            np.logical_or.at(feas, state_codes, row_feas)
        else:
            feas = np.asarray(feasible(states), dtype=bool)
            if feas.shape != (n_states, n_actions):
                raise DataValidationError(
                    f"feasible(states) has shape {feas.shape}, must be {(n_states, n_actions)}."
                )
        ok = feas[state_codes, codes]
        if not ok.all():
            i = int(np.argmax(~ok))
            raise DataValidationError(
                f"action {_py(act_values[i])!r} (column {action!r}) is infeasible in its "
                f"state {keys.iloc[i].to_dict()} at row {_py(df.index[i])!r}."
            )
        once = int((np.bincount(state_codes, minlength=n_states) == 1).sum())
        if n_states >= 50 and once > 0.5 * n_states:
            warnings.warn(
                f"{once:,} of {n_states:,} states are seen in one row only (state columns "
                f"{list(state_cols)}): a tabular model estimates each of them from a single "
                "decision. Bin fine-grained columns (bins=) or drop some.",
                UserWarning,
                stacklevel=2,
            )
        member_codes, member_ids = pd.factorize(ids)
        member_codes = np.asarray(member_codes, dtype=np.int64)
        nxt = np.full(len(df), -1, dtype=np.int64)
        nxt[:-1] = np.where(same, state_codes[1:], -1)
        return cls(
            id_col=id,
            time_col=time,
            state_cols=state_cols,
            action_col=action,
            actions=labels,
            states=states,
            member=member_codes,
            period=t.astype(np.int64),
            state=state_codes,
            action=codes,
            next_state=nxt,
            feasible=feas,
            member_ids=np.asarray(member_ids),
            bins=bin_spec,
        )


def panel_info(panel: Panel) -> dict[str, Any]:
    """What results keep of their panel: quantile bins and the column roles."""
    return {
        "bins": dict(panel.bins),
        "id_col": panel.id_col,
        "time_col": panel.time_col,
        "action_col": panel.action_col,
    }


def check_dense_size(n_states: int, n_actions: int, *, limit: float = MAX_DENSE_BYTES) -> float:
    """Refuse a dense transition model too large to hold; returns its size in bytes.

    Raises
    ------
    DataValidationError
        If ``n_actions * n_states**2`` float64 values exceed ``limit`` bytes, with the
        numbers.
    """
    need = 8.0 * n_actions * float(n_states) ** 2
    if need > limit:
        raise DataValidationError(
            f"a dense transition model on {n_states:,} states and {n_actions} actions needs "
            f"{need / 1024**3:,.1f} GiB (limit {limit / 1024**3:,.1f} GiB); bin fine-grained "
            "state columns (bins=, --bins COLUMN=N) or use fewer state columns."
        )
    return need


def estimate_transitions(
    panel: Panel, *, smoothing: float = 0.0, fallback: str = "nearest"
) -> tuple[FloatArray, FloatArray]:
    """Frequency estimate of ``P[a, s, s']`` from observed consecutive rows.

    Parameters
    ----------
    panel : Panel
    smoothing : float, default 0
        Pseudo-count added to every observed next state of the same ``(s, a)``.
    fallback : {"nearest", "stay"}, default "nearest"
        For ``(s, a)`` never observed with a next state: copy the row of the nearest state
        (standardised state features) where ``a`` was observed, or stay in place.

    Returns
    -------
    transitions : ndarray of shape (n_actions, n_states, n_states)
    counts : ndarray of shape (n_actions, n_states)
        Number of observed transitions per ``(a, s)``.
    """
    if fallback not in ("nearest", "stay"):
        raise ValueError(f"fallback == {fallback!r}, must be 'nearest' or 'stay'.")
    n_s, n_a = panel.n_states, panel.n_actions
    check_dense_size(n_s, n_a)
    ok = panel.next_state >= 0
    trans = np.zeros((n_a, n_s, n_s))
    np.add.at(trans, (panel.action[ok], panel.state[ok], panel.next_state[ok]), 1.0)
    if smoothing > 0:
        trans = np.where(trans > 0, trans + smoothing, 0.0)
    counts = trans.sum(axis=2)
    empty = counts == 0
    if fallback == "nearest" and empty.any():
        x = panel.state_features()
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        for a in range(n_a):
            have = np.flatnonzero(~empty[a])
            miss = np.flatnonzero(empty[a])
            if len(have) == 0 or len(miss) == 0:
                continue
            d2 = ((x[miss, None, :] - x[None, have, :]) ** 2).sum(axis=2)
            trans[a, miss] = trans[a, have[np.argmin(d2, axis=1)]]
        empty = trans.sum(axis=2) == 0
    a_idx, s_idx = np.nonzero(empty)
    trans[a_idx, s_idx, s_idx] = 1.0
    trans /= trans.sum(axis=2, keepdims=True)
    return trans, counts
