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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from memberlab._errors import DataValidationError

__all__ = ["ARMS", "ExperimentReadout", "confidence_sequence_halfwidth", "readout"]

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
    bad = ~np.isfinite(r)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"column {reward!r} row {i}: {frame[reward].iloc[i]!r}, must be a finite number."
        )
    arms = f[arm].astype(str).to_numpy()
    bad = ~np.isin(arms, ARMS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(f"column {arm!r} row {i}: {arms[i]!r}, must be one of {ARMS}.")
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
