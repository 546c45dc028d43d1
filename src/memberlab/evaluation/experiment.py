"""Readout of a randomised holdout: lift with unit-clustered intervals, CUPED, an always-valid
confidence sequence and a sample-ratio-mismatch test.

Input: one row per decision with the unit (shopper, member) it served, its arm
(``holdout`` or ``policy``) and its reward. Units are the randomisation units, so every
variance is clustered by unit: the reward per decision of an arm is a ratio of unit sums,
``sum_u Y_u / sum_u N_u``, whose delta-method variance is
``var_u(Y_u - m N_u) / (n_units * mean(N_u)^2)``. Rows without a unit id are their own
unit (per-request assignment).

- CUPED (Deng et al. 2013): with a pre-period covariate ``X_u`` per unit, the reward per
  unit is adjusted to ``Y_u - theta (X_u - mean X)`` with ``theta = cov(Y, X) / var(X)``
  pooled over arms; the lift of the adjusted means has the same expectation and a
  variance smaller by the factor ``1 - corr(Y, X)^2``.
- Confidence sequence: the normal-mixture boundary (Robbins 1970; in the asymptotic form
  of Waudby-Smith et al. 2023, Thm 2.2), tuned for ``cs_tuning_units`` units: an
  interval that holds at every look simultaneously with probability ``level``, so
  reading it daily does not inflate false positives.
- SRM: chi-square test of the unit counts against the configured holdout fraction.

:func:`holdout_report` is what the service's ``GET /v1/admin/experiment`` and
``memberlab experiment readout`` print: the readout, plus units seen in both arms (a
broken split: each is counted in the arm of its first decision, and the SRM check
flags it) and the cumulative lift over time. :func:`per_decision` turns export rows (one
per served item) into the one row per decision the readout takes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from memberlab._errors import DataValidationError

__all__ = [
    "ARMS",
    "Batch",
    "ExperimentReadout",
    "UnitSums",
    "confidence_sequence_halfwidth",
    "first_arm",
    "holdout_report",
    "holdout_report_batches",
    "per_decision",
    "readout",
]

ARMS = ("holdout", "policy")


def confidence_sequence_halfwidth(sd: float, n: float, *, alpha: float, n_star: float) -> float:
    """Half-width of the normal-mixture confidence sequence for a mean of ``n``
    observations with standard deviation ``sd``, tuned to be tightest near ``n_star``.

    ``sd * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))`` with
    ``rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / n_star``.
    """
    if n <= 0:
        return float("inf")
    la = -2.0 * math.log(alpha)
    rho2 = (la + math.log(la + 1.0)) / n_star
    return sd * math.sqrt(
        2.0 * (n * rho2 + 1.0) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1.0) / alpha)
    )


@dataclass(frozen=True)
class ExperimentReadout:
    """The readout; :meth:`to_dict` gives the JSON shape of ``memberlab experiment
    readout`` and ``GET /v1/admin/experiment``."""

    arms: dict[str, dict[str, float]]
    lift: dict[str, Any]
    srm: dict[str, Any]
    confidence_sequence: dict[str, Any]
    cuped: dict[str, Any] | None
    unassigned: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arms": self.arms,
            "lift": self.lift,
            "srm": self.srm,
            "confidence_sequence": self.confidence_sequence,
            "unassigned_units": self.unassigned,
        }
        if self.cuped is not None:
            out["cuped"] = self.cuped
        return out


def _check_rows(
    arms: np.ndarray, rewards: np.ndarray, arm: str, reward: str, raw: Any, offset: int = 0
) -> None:
    """Refuse a reward that is not a finite number or an arm that is not one of ARMS
    (the message names the column and the row, counted from ``offset``)."""
    bad = ~np.isfinite(rewards)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"column {reward!r} row {offset + i}: {raw[i]!r}, must be a finite number."
        )
    bad = ~np.isin(arms, ARMS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"column {arm!r} row {offset + i}: {arms[i]!r}, must be one of {ARMS}."
        )


def _unit_table(frame: pd.DataFrame, unit: str, arm: str, reward: str) -> _Units:
    for col in (arm, reward):
        if col not in frame.columns:
            raise DataValidationError(
                f"column {col!r} is missing; columns are {list(frame.columns)}."
            )
    f = frame[[c for c in (unit, arm, reward) if c in frame.columns]].copy()
    if unit not in f.columns:
        f[unit] = None
    r = pd.to_numeric(f[reward], errors="coerce").to_numpy(dtype=np.float64)
    arms = f[arm].astype(str).to_numpy()
    _check_rows(arms, r, arm, reward, frame[reward].to_numpy(dtype=object))
    units = f[unit].to_numpy(dtype=object)
    missing = pd.isna(units)
    codes, uniq = pd.factorize(pd.Series(units), use_na_sentinel=True)
    codes = np.asarray(codes)
    k = len(uniq)
    n_missing = int(missing.sum())
    if n_missing:  # each row without a unit id is its own unit
        codes = codes.copy()
        codes[missing] = k + np.arange(n_missing)
    n_units = k + n_missing
    a1 = (arms == "policy").astype(np.float64)
    n = np.bincount(codes, minlength=n_units).astype(np.float64)
    y = np.bincount(codes, weights=r, minlength=n_units)
    pol = np.bincount(codes, weights=a1, minlength=n_units)
    mixed = (pol > 0) & (pol < n)
    if mixed.any():
        u = int(np.flatnonzero(mixed)[0])
        raise DataValidationError(
            f"unit {uniq[u]!r} appears in both arms; assignment must be sticky per unit."
        )
    return _Units(
        uniq.to_numpy(dtype=object),
        pol > 0,
        y,
        n,
        np.r_[np.zeros(k, bool), np.ones(n_missing, bool)],
    )


class UnitSums:
    """Per-unit sums of a holdout, fed decisions in time order, in memory of the units.

    A clustered readout needs only each unit's reward sum, decision count and arm, so
    decisions stream through this (pages of a query, batches of a file) and are not
    kept. A unit's arm is the arm of its first decision; a unit seen in both arms (a
    broken split) stays in that arm and is counted in :attr:`mixed`. A decision without
    a unit id is its own unit.
    """

    def __init__(self) -> None:
        self._index: dict[Any, int] = {}
        self._ids: list[Any] = []
        self._policy: list[bool] = []
        self._both: list[bool] = []
        self._y: list[float] = []
        self._n: list[float] = []
        self._anon_policy: list[bool] = []
        self._anon_y: list[float] = []
        self.decisions = 0
        self.mixed = 0

    def add(self, unit: Any, policy: bool, reward: float) -> None:
        """One decision: its unit id (None: its own unit), arm and reward."""
        self.decisions += 1
        if unit is None or unit != unit:  # None or NaN: no unit id
            self._anon_policy.append(policy)
            self._anon_y.append(reward)
            return
        j = self._index.get(unit)
        if j is None:
            self._index[unit] = len(self._ids)
            self._ids.append(unit)
            self._policy.append(policy)
            self._both.append(False)
            self._y.append(reward)
            self._n.append(1.0)
            return
        self._y[j] += reward
        self._n[j] += 1.0
        if policy != self._policy[j] and not self._both[j]:
            self._both[j] = True
            self.mixed += 1

    def units(self) -> _Units:
        """The per-unit table the readout works on (named units first, in order seen)."""
        k, m = len(self._ids), len(self._anon_y)
        return _Units(
            np.array(self._ids, dtype=object),
            np.array(self._policy + self._anon_policy, dtype=bool).reshape(k + m),
            np.array(self._y + self._anon_y, dtype=np.float64).reshape(k + m),
            np.r_[np.array(self._n, dtype=np.float64), np.ones(m)],
            np.r_[np.zeros(k, bool), np.ones(m, bool)],
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Units and decisions per arm so far."""
        per = self.units()
        return {
            a: {
                "units": int((per.policy == (a == "policy")).sum()),
                "decisions": int(per.n[per.policy == (a == "policy")].sum()),
            }
            for a in ARMS
        }


@dataclass(frozen=True)
class _Units:
    ids: np.ndarray  # unit ids of the units with one (the rest follow, unnamed)
    policy: np.ndarray  # bool per unit
    y: np.ndarray  # reward sum per unit
    n: np.ndarray  # decisions per unit
    unassigned: np.ndarray  # bool: a row without a unit id


def _ratio(y: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Reward per decision of one arm and its unit-clustered variance."""
    k = y.shape[0]
    m = float(y.sum() / n.sum())
    if k < 2:
        return m, float("inf")
    resid = y - m * n
    return m, float(resid.var(ddof=1) / (k * n.mean() ** 2))


def readout(
    frame: pd.DataFrame,
    *,
    unit: str = "unit_id",
    arm: str = "assignment",
    reward: str = "reward",
    covariates: Mapping[str, float] | pd.Series | None = None,
    holdout_fraction: float | None = None,
    level: float = 0.95,
    cs_tuning_units: float = 10_000.0,
) -> ExperimentReadout:
    """Read out a holdout experiment.

    Parameters
    ----------
    frame : DataFrame
        One row per decision (e.g. a ``memberlab logs export`` file, closed rows).
    unit, arm, reward : str
        Columns of the unit id (null = its own unit), the arm (``holdout``/``policy``)
        and the reward.
    covariates : mapping of unit id to float, optional
        A pre-period metric per unit (e.g. its reward per unit before the experiment),
        for CUPED; units without one get the mean.
    holdout_fraction : float, optional
        Configured share of units in the holdout, for the SRM test (default: no test).
    level : float
        Level of the intervals and of the confidence sequence.
    cs_tuning_units : float
        Units at which the confidence sequence is tightest (fix it before the experiment
        starts; it must not be tuned on the data).
    """
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    per = _unit_table(frame, unit, arm, reward)
    return _readout_units(
        per,
        covariates=covariates,
        holdout_fraction=holdout_fraction,
        level=level,
        cs_tuning_units=cs_tuning_units,
    )


def _readout_units(
    per: _Units,
    *,
    covariates: Mapping[str, float] | pd.Series | None = None,
    holdout_fraction: float | None = None,
    level: float = 0.95,
    cs_tuning_units: float = 10_000.0,
) -> ExperimentReadout:
    """:func:`readout` on per-unit sums."""
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    z = float(special.ndtri(0.5 + level / 2))
    arms: dict[str, dict[str, float]] = {}
    est: dict[str, tuple[float, float]] = {}
    for a in ARMS:
        sel = per.policy if a == "policy" else ~per.policy
        ya, na = per.y[sel], per.n[sel]
        if ya.size < 2:
            raise DataValidationError(f"arm {a!r} has {ya.size} unit(s); need at least 2.")
        m, v = _ratio(ya, na)
        est[a] = (m, v)
        arms[a] = {
            "units": int(ya.size),
            "decisions": int(na.sum()),
            "reward": float(ya.sum()),
            "reward_per_decision": m,
            "reward_per_unit": float(ya.mean()),
            "se_per_decision": math.sqrt(v),
        }
    (m1, v1), (m0, v0) = est["policy"], est["holdout"]
    diff = m1 - m0
    se = math.sqrt(v1 + v0)
    rel = m1 / m0 - 1 if m0 != 0 else float("nan")
    se_rel = math.sqrt(v1 / m0**2 + m1**2 * v0 / m0**4) if m0 != 0 else float("nan")
    lift = {
        "metric": "reward_per_decision",
        "absolute": diff,
        "se": se,
        "lower": diff - z * se,
        "upper": diff + z * se,
        "relative": rel,
        "relative_lower": rel - z * se_rel,
        "relative_upper": rel + z * se_rel,
        "p_value": float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float("nan"),
        "level": level,
        "method": "delta method, clustered by unit",
    }
    # confidence sequence: the difference of two means behaves as one mean over all
    # units with per-unit s.d. sqrt(n_units * var(diff))
    n_units = float(per.y.size)
    sd = math.sqrt(n_units * (v1 + v0))
    hw = confidence_sequence_halfwidth(sd, n_units, alpha=1 - level, n_star=cs_tuning_units)
    cs = {
        "lower": diff - hw,
        "upper": diff + hw,
        "level": level,
        "tuning_units": cs_tuning_units,
        "method": "normal-mixture confidence sequence (asymptotic), clustered by unit",
    }
    srm: dict[str, Any] = {"p_value": None, "expected_holdout_fraction": holdout_fraction}
    k0, k1 = arms["holdout"]["units"], arms["policy"]["units"]
    srm["observed_holdout_fraction"] = k0 / (k0 + k1)
    if holdout_fraction is not None:
        if not 0 < holdout_fraction < 1:
            raise DataValidationError(f"holdout_fraction == {holdout_fraction}, must be in (0, 1).")
        exp = np.array([holdout_fraction, 1 - holdout_fraction]) * (k0 + k1)
        chi2, p = stats.chisquare([k0, k1], exp)
        srm |= {"chi2": float(chi2), "p_value": float(p), "mismatch": bool(p < 0.001)}
    cuped = None
    if covariates is not None:
        cov = pd.Series(covariates, dtype=np.float64)
        cov.index = cov.index.astype(str)
        xs = pd.Series([str(u) for u in per.ids], dtype=object).map(cov).astype(np.float64)
        x = np.r_[xs.to_numpy(), np.full(int(per.unassigned.sum()), np.nan)]
        have = int(np.isfinite(x).sum())
        x = np.where(np.isfinite(x), x, np.nanmean(x) if have else 0.0)
        y = per.y
        vx = float(np.var(x, ddof=1))
        theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
        adj = y - theta * (x - x.mean())
        is1 = per.policy
        a1, a0 = adj[is1], adj[~is1]
        d_adj = float(a1.mean() - a0.mean())
        se_adj = math.sqrt(a1.var(ddof=1) / a1.size + a0.var(ddof=1) / a0.size)
        raw1, raw0 = y[is1], y[~is1]
        se_raw = math.sqrt(raw1.var(ddof=1) / raw1.size + raw0.var(ddof=1) / raw0.size)
        cuped = {
            "metric": "reward_per_unit",
            "absolute": d_adj,
            "se": se_adj,
            "lower": d_adj - z * se_adj,
            "upper": d_adj + z * se_adj,
            "unadjusted": float(raw1.mean() - raw0.mean()),
            "unadjusted_se": se_raw,
            "theta": theta,
            "variance_reduction": 1 - (se_adj / se_raw) ** 2 if se_raw > 0 else 0.0,
            "units_with_covariate": have,
            "level": level,
            "method": "CUPED (pooled theta), per-unit means",
        }
    return ExperimentReadout(arms, lift, srm, cs, cuped, int(per.unassigned.sum()))


# --------------------------------------------------------------------------- reports


def per_decision(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per decision from export rows (one per served item).

    Keeps decisions with an arm whose every impression is closed; the reward is summed
    over the decision's served items. Returns the frame (columns ``decision_id, ts,
    unit_id, assignment, reward``, in time order) and the number of decisions left out
    because a window is still open.
    """
    for col in ("decision_id", "assignment", "reward", "status"):
        if col not in rows.columns:
            raise DataValidationError(
                f"column {col!r} is missing; an export has decision_id, ts, unit_id, "
                f"assignment, reward and status (columns are {list(rows.columns)})."
            )
    f = rows[rows["assignment"].notna()]
    closed = (f["status"] == "closed").groupby(f["decision_id"], sort=False).all()
    reward = pd.to_numeric(f["reward"], errors="coerce").fillna(0.0)
    g = f.assign(reward=reward).groupby("decision_id", sort=False)
    out = pd.DataFrame(
        {
            "ts": g["ts"].first() if "ts" in f.columns else 0.0,
            "unit_id": g["unit_id"].first() if "unit_id" in f.columns else None,
            "assignment": g["assignment"].first(),
            "reward": g["reward"].sum(),
        }
    )
    out = out[closed.reindex(out.index).to_numpy()]
    out = out.reset_index().sort_values(["ts", "decision_id"], kind="stable")
    return out.reset_index(drop=True), int((~closed).sum())


def first_arm(
    frame: pd.DataFrame, *, unit: str = "unit_id", arm: str = "assignment"
) -> tuple[pd.DataFrame, int]:
    """Put every row of a unit in the arm of the unit's first row (rows in time order).

    Returns the frame and the number of units seen in both arms: with sticky assignment
    there are none, so any is a broken split (a changed salt or holdout fraction, a
    client that assigns on its own).
    """
    if unit not in frame.columns or arm not in frame.columns:
        return frame, 0
    named = frame[unit].notna()
    if not named.any():
        return frame, 0
    arms = frame.loc[named, arm].astype(str)
    units = frame.loc[named, unit]
    n_arms = arms.groupby(units, sort=False).nunique()
    mixed = int((n_arms > 1).sum())
    if mixed:
        frame = frame.copy()
        first = arms.groupby(units, sort=False).first()
        frame.loc[named, arm] = units.map(first).to_numpy()
    return frame, mixed


def _grid(t0: float, t1: float, every: float | None, max_points: int) -> tuple[float, float, int]:
    """Start, period and number of points of the series over ``[t0, t1]``."""
    span = t1 - t0
    if every is None:
        every = span / 20 if span > 0 else 1.0
    if every <= 0 or not math.isfinite(every):
        raise DataValidationError(f"every == {every}, must be a positive number of seconds.")
    if span / every > max_points:
        every = span / max_points
    if span == 0:  # one moment: one point
        return t0, every, 1
    start = math.floor(t0 / every) * every
    n = max(1, math.ceil((t1 - start) / every))
    if start + n * every <= t1:
        n += 1
    return start, every, n


#: One batch of decisions in time order: unit ids (None: no unit), arms, rewards, times.
Batch = tuple[Sequence[Any], Sequence[str], Sequence[float], Sequence[float]]


def holdout_report_batches(
    batches: Iterable[Batch],
    *,
    time_range: tuple[float, float] | None,
    covariates: Mapping[str, float] | pd.Series | None = None,
    holdout_fraction: float | None = None,
    level: float = 0.95,
    cs_tuning_units: float = 10_000.0,
    every: float | None = None,
    max_points: int = 60,
    pending: int = 0,
    arm: str = "assignment",
    reward: str = "reward",
) -> dict[str, Any]:
    """:func:`holdout_report` on decisions streamed in time order, in memory of the units.

    ``time_range`` is the first and last decision time (for the series' grid; None: no
    series). Each decision is added to :class:`UnitSums` and dropped; at the end of each
    period of the series the readout is taken from the sums so far.
    """
    if not 0 < level < 1:
        raise DataValidationError(f"level == {level}, must be in (0, 1).")
    kw: dict[str, Any] = {
        "holdout_fraction": holdout_fraction, "level": level, "cs_tuning_units": cs_tuning_units,
    }  # fmt: skip
    sums = UnitSums()
    series: list[dict[str, Any]] = []
    start, step, n_points = _grid(*time_range, every, max_points) if time_range else (0, 1, 0)
    j = 1  # the next point of the series

    def point(until: float) -> None:
        try:
            r = _readout_units(sums.units(), **kw)
        except DataValidationError:
            return  # an arm has fewer than two units so far
        lift, cs = r.lift, r.confidence_sequence
        series.append(
            {
                "until": until,
                "decisions": sums.decisions,
                "units": {a: r.arms[a]["units"] for a in ARMS},
                "absolute": lift["absolute"],
                "lower": lift["lower"],
                "upper": lift["upper"],
                "cs_lower": cs["lower"],
                "cs_upper": cs["upper"],
                "srm_p_value": r.srm["p_value"],
            }
        )

    offset = 0
    for units, arms, rewards, ts in batches:
        a = np.asarray(arms, dtype=object).astype(str)
        r = np.asarray(rewards, dtype=np.float64)
        _check_rows(a, r, arm, reward, list(rewards), offset)
        offset += len(a)
        pol = (a == "policy").tolist()
        for u, p, y, t in zip(units, pol, r.tolist(), ts, strict=True):
            while j < n_points and t >= start + j * step:
                point(start + j * step)
                j += 1
            sums.add(u, p, y)
    if time_range is not None and sums.decisions:
        while j < n_points:  # periods after the last decision (none when in time order)
            point(start + j * step)
            j += 1
        point(min(start + n_points * step, time_range[1]))
    try:
        res = _readout_units(sums.units(), covariates=covariates, **kw)
    except DataValidationError as exc:
        if "need at least 2" not in str(exc):
            raise
        return {
            "ready": False,
            "reason": str(exc),
            "arms": sums.counts(),
            "decisions_pending": pending,
            "series": [],
        }
    out: dict[str, Any] = {"ready": True, **res.to_dict()}
    chi_mismatch = bool(out["srm"].get("mismatch", False))
    out["srm"] = {
        **out["srm"],
        "units_in_both_arms": sums.mixed,
        "mismatch": chi_mismatch or sums.mixed > 0,
    }
    out["decisions_pending"] = pending
    out["series"] = series
    return out


def holdout_report(
    frame: pd.DataFrame,
    *,
    unit: str = "unit_id",
    arm: str = "assignment",
    reward: str = "reward",
    ts: str = "ts",
    covariates: Mapping[str, float] | pd.Series | None = None,
    holdout_fraction: float | None = None,
    level: float = 0.95,
    cs_tuning_units: float = 10_000.0,
    every: float | None = None,
    pending: int = 0,
) -> dict[str, Any]:
    """The readout as JSON, with a broken-split check and the lift over time.

    ``frame`` has one row per decision (see :func:`per_decision`), taken in time order
    (sorted by ``ts`` when it has that column). Units seen in both arms are counted in
    the arm of their first decision and reported in ``srm["units_in_both_arms"]``;
    ``srm["mismatch"]`` is true when there is any or when the chi-square test's p-value
    is under 0.001. ``series`` is the cumulative readout at the end of each period of
    ``every`` seconds (default: about 20 periods; ``every=86400`` gives one point per
    UTC day), with the lift, its fixed-n interval, the confidence sequence (the band to
    watch over time: it holds at every look at once), the units per arm and the SRM
    p-value; periods where an arm has fewer than two units are left out. When an arm
    has fewer than two units the answer is ``{"ready": false, "reason": ...}`` with the
    counts so far. ``pending`` (decisions whose windows are open, left out) is reported
    as given. The same computation as :func:`holdout_report_batches` (one batch).
    """
    for col in (arm, reward):
        if col not in frame.columns:
            raise DataValidationError(
                f"column {col!r} is missing; columns are {list(frame.columns)}."
            )
    time_range: tuple[float, float] | None = None
    if ts in frame.columns and not frame.empty:
        t = pd.to_numeric(frame[ts], errors="coerce")
        if not t.is_monotonic_increasing:
            frame = frame.iloc[np.argsort(t.to_numpy(), kind="stable")]
            t = t.iloc[np.argsort(t.to_numpy(), kind="stable")]
        times = t.to_numpy(dtype=np.float64)
        time_range = (float(np.nanmin(times)), float(np.nanmax(times)))
    else:
        times = np.zeros(len(frame))
    units = frame[unit].tolist() if unit in frame.columns else [None] * len(frame)
    rewards = pd.to_numeric(frame[reward], errors="coerce").to_numpy(dtype=np.float64)
    arms = frame[arm].astype(str).to_numpy()
    # checked here too, so that a message shows the value as the file has it
    _check_rows(arms, rewards, arm, reward, frame[reward].to_numpy(dtype=object))
    batch = (units, arms.tolist(), rewards.tolist(), times.tolist())
    return holdout_report_batches(
        [batch], time_range=time_range, covariates=covariates,
        holdout_fraction=holdout_fraction, level=level, cs_tuning_units=cs_tuning_units,
        every=every, pending=pending, arm=arm, reward=reward,
    )  # fmt: skip
