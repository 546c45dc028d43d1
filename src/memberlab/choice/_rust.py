"""Rust's (1987) bus-engine replacement data and model.

Harold Zurcher's choice, each month, to keep a bus engine or replace it. The state is the
mileage since the last replacement, in cells; the reward of keeping is ``-c(x) =
-0.001 * theta11 * x`` (Rust's scaling), of replacing ``-RC`` (the bus restarts from cell
0); the mileage increments over a month follow a multinomial ``theta3`` shared by both
actions.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memberlab._errors import ConvergenceWarning, DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
from memberlab.choice._nfxp_core import NFXPProblem, maximize_bhhh
from memberlab.choice._solve import small_blas, solve_values

__all__ = [
    "RustData",
    "RustPQR",
    "RustResults",
    "fit_rust",
    "load_rust_bus",
    "rust_pqr",
    "rust_states",
    "simulate_rust",
]

logger = logging.getLogger(__name__)

_FILE = "rust_bus_long.csv"
_ENV = "MEMBERLAB_RUST_BUS_DIR"


def _default_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    out: list[Path] = []
    # <repo>/src/memberlab/choice/_rust.py -> <repo>/../shared/data/rust_bus
    for parent in here.parents:
        out.append(parent / ".." / "shared" / "data" / "rust_bus")
        out.append(parent / "shared" / "data" / "rust_bus")
    out.append(Path.cwd() / ".." / "shared" / "data" / "rust_bus")
    return out


def load_rust_bus(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Load Rust's bus-engine panel, one row per bus-month, groups 1-8.

    Provenance: ``rust_bus_long.csv`` was built by the memberlab data curators from Rust's
    raw odometer files (``g870.asc``, ``rt50.asc``, ``t8h203.asc``, ``a530875.asc``,
    ``a530874.asc``, ``a452374.asc``, ``a530872.asc``, ``a452372.asc``; groups 1-8), copied
    byte for byte from GitHub ``OpenSourceEconomics/zurcher-data`` (commit ``d39eb4d``,
    2021-07-06), which match the files of Rust's NFXP GAUSS distribution (ruspy,
    ``natashawatkins/rust-replication``). Groups 1-4 agree with the widely used
    ``busdata1234.csv``. Cite Rust (1987), Econometrica 55(5): 999-1033, and Rust (2000),
    NFXP Documentation Manual, version 6. See ``shared/data/rust_bus/README.md``.

    Columns: ``bus_id, group, period, year, month, replaced, odometer,
    mileage_since_replacement``. ``replaced = 1`` marks the first month a new engine is
    observed, so the decision taken in month ``t`` is ``replaced`` of month ``t + 1``.

    Parameters
    ----------
    path : path-like, optional
        The CSV file or the directory holding it. By default the directory named by the
        environment variable ``MEMBERLAB_RUST_BUS_DIR``, else ``<repo>/../shared/data/
        rust_bus`` (found by walking up from this file and from the working directory).

    Raises
    ------
    FileNotFoundError
        If the file is not found; the message lists where it looked.
    """
    candidates: list[Path]
    if path is not None:
        p = Path(path)
        candidates = [p if p.suffix == ".csv" else p / _FILE]
    elif os.environ.get(_ENV):
        candidates = [Path(os.environ[_ENV]) / _FILE]
    else:
        candidates = [d / _FILE for d in _default_dirs()]
    for c in candidates:
        if c.is_file():
            return pd.read_csv(c)
    looked = ", ".join(str(c.resolve()) for c in candidates[:4])
    raise FileNotFoundError(
        f"Rust's bus data ({_FILE}) not found; looked in {looked}. Pass path=... or set "
        f"{_ENV} to the directory holding {_FILE}."
    )


@dataclass(frozen=True, slots=True)
class RustData:
    """Discretised decisions: state, replacement decision and mileage increment.

    Attributes
    ----------
    states : ndarray of int, shape (n_obs,)
        Cell of the mileage since replacement at the decision (0-based).
    decisions : ndarray of int, shape (n_obs,)
        1 if the engine was replaced at this decision.
    increments : ndarray of int, shape (n_obs,)
        Cells travelled over the month (from cell 0 after a replacement).
    n_bins : int
    groups : tuple of int
    """

    states: IntArray
    decisions: IntArray
    increments: IntArray
    n_bins: int
    groups: tuple[int, ...]


_RULES = ("rust", "ruspy")


def rust_states(
    frame: pd.DataFrame,
    *,
    groups: tuple[int, ...] = (1, 2, 3, 4),
    bins: int = 175,
    rule: str = "rust",
) -> RustData:
    """Discretise the bus panel on Rust's grid of 175 or 90 cells over 0-450,000 miles.

    ``rule="rust"`` (the default) is the discretisation of Rust's NFXP code on both grids:
    the 1-based cell ``k = ceil(m * bins / 450000)`` (so a reading of exactly 70,000
    miles is in cell 14 of the 90-cell grid, ``(65000, 70000]``), the state ``k - 1``
    (0-based; a fresh engine's reading of 0 miles is state 0 too) and, after a
    replacement, the increment ``k`` counted from cell 0 (Rust's one-cell-higher
    landing point). ``rule="ruspy"`` is ruspy's: state ``floor(m * bins / 450000)`` and,
    after a replacement, the increment ``ceil(m * bins / 450000)``. The two differ only
    on readings that are an exact multiple of the cell width: on the 90-cell grid one
    reading in groups 1-4 (bus 4339, month 15, 70,000 miles; none in group 4), which
    turns two 1-cell moves into a 0- and a 2-cell move and is the whole 5-point gap
    between ruspy's log-likelihood for groups 1-3 and 1-4 and Rust's (1987) Table IX.

    One observation per bus-month from the second month on, aligned as in Rust's NFXP
    code: the state of month ``t``, the decision taken in it (the replacement flag of
    month ``t + 1``; 0 in a bus's last month) and the mileage increment that led into
    it from month ``t - 1``. The increment enters the likelihood on its own (it does not
    depend on the state), so pairing it with month ``t`` rather than ``t - 1`` leaves the
    transition likelihood unchanged; the choice likelihood runs over months 2..T. With
    this alignment and all observed increments kept (no lumping of the rare 4- and
    5-cell moves), the default rule gives Rust's Table X (175 cells) and Table IX (90
    cells) to every printed digit, e.g. groups 1-4 at 175 cells N = 8,156 and
    log-likelihood -8607.889, at 90 cells -6055.250.

    Parameters
    ----------
    frame : DataFrame
        From :func:`load_rust_bus`.
    groups : tuple of int
        Bus groups, a non-empty subset of 1..8.
    bins : {175, 90}
        Cells of ``450000 / bins`` miles.
    rule : {"rust", "ruspy"}
        Discretisation rule (see above).
    """
    if bins not in (175, 90):
        raise ValueError(f"bins == {bins}, must be 175 or 90.")
    if rule not in _RULES:
        raise ValueError(f"rule == {rule!r}, must be one of {_RULES}.")
    bad = sorted(set(groups) - set(range(1, 9)))
    if bad or not groups:
        raise ValueError(f"groups == {groups!r}, must be a non-empty subset of 1..8.")
    df = frame[frame["group"].isin(groups)].sort_values(["bus_id", "period"])
    miles = df["mileage_since_replacement"].to_numpy(dtype=float)
    bus = df["bus_id"].to_numpy()
    rep = df["replaced"].to_numpy().astype(np.int64)
    scaled = miles * bins / 450_000
    if rule == "rust":
        cell = np.ceil(scaled).astype(np.int64)
        state = np.maximum(cell - 1, 0)
        after = cell
    else:
        cell = np.floor(scaled).astype(np.int64)
        state = cell
        after = np.ceil(scaled).astype(np.int64)
    same_prev = np.zeros(len(bus), dtype=bool)
    same_prev[1:] = bus[1:] == bus[:-1]
    next_rep = np.zeros(len(bus), dtype=np.int64)
    same_next = np.zeros(len(bus), dtype=bool)
    same_next[:-1] = same_prev[1:]
    next_rep[:-1] = np.where(same_next[:-1], rep[1:], 0)
    prev_cell = np.zeros(len(bus), dtype=np.int64)
    prev_cell[1:] = cell[:-1]
    inc = np.where(rep == 1, after, cell - prev_cell)
    keep = same_prev  # the first month of each bus has no increment into it
    if (inc[keep] < 0).any():
        raise DataValidationError("negative mileage increment in the bus data.")
    if (state[keep] >= bins).any():
        raise DataValidationError(f"mileage beyond the {bins}-cell grid (450,000 miles).")
    return RustData(state[keep], next_rep[keep], inc[keep], bins, tuple(groups))


def _increment_transitions(n_bins: int, n_inc: int) -> Any:
    """Build ``psi -> (P, dP)`` for increments with ``p_last = 1 - sum(psi)``."""
    base = np.zeros((n_inc, n_bins, n_bins))
    for j in range(n_inc):
        for s in range(n_bins):
            base[j, s, min(s + j, n_bins - 1)] = 1.0
    # replace: restart from cell 0, so every row equals the keep row of cell 0
    rep = np.broadcast_to(base[:, :1, :], base.shape).copy()
    both = np.stack([base, rep], axis=1)  # (J, A, S, S)
    d_both = both[:-1] - both[-1][None]  # (J-1, A, S, S)

    def fn(psi: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = np.append(psi, 1.0 - psi.sum())
        return np.einsum("j,jast->ast", p, both), d_both

    return fn


def _cost_features(n_bins: int) -> FloatArray:
    """``features[s, a] @ (RC, theta11)``: keep ``-0.001 theta11 s``, replace ``-RC``."""
    feats = np.zeros((n_bins, 2, 2))
    feats[:, 0, 1] = -0.001 * np.arange(n_bins, dtype=float)
    feats[:, 1, 0] = -1.0
    return feats


def simulate_rust(
    *,
    rc: float,
    theta11: float,
    theta3: FloatArray | list[float] | tuple[float, ...],
    discount: float,
    n_buses: int = 50,
    n_periods: int = 120,
    n_bins: int = 175,
    rng: RNGLike = None,
) -> RustData:
    """Simulate Zurcher's decisions from Rust's model with known parameters.

    The design of the Monte Carlo of Su and Judd (2012) and Iskhakov, Lee, Rust,
    Schjerning and Seo (2016): every bus starts with a new engine in cell 0; each month
    the engine is replaced with the model's conditional choice probability at the
    current cell; then the bus moves ``j`` cells with probability ``theta3[j]`` from cell
    0 after a replacement, else from its cell, capped at the last cell (the model's
    transition, so the estimator's specification is the true one).

    Parameters
    ----------
    rc, theta11 : float
        Replacement cost and cost slope (``c(x) = 0.001 theta11 x``).
    theta3 : sequence of float
        Increment probabilities (non-negative, summing to 1).
    discount : float in [0, 1)
    n_buses, n_periods : int
        Panel size; one observation per bus-month (state, decision, increment).
    n_bins : int
        Number of mileage cells.
    rng : int, Generator or None

    Returns
    -------
    RustData
        Bus-major (all months of bus 0, then bus 1, ...), ``groups=()``.
    """
    p = np.asarray(theta3, dtype=float)
    if p.ndim != 1 or len(p) < 2 or (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"theta3 == {p.tolist()!r}, must be >= 2 probabilities summing to 1.")
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount == {discount}, must be in [0, 1).")
    for name, value in (("n_buses", n_buses), ("n_periods", n_periods)):
        if value < 1:
            raise ValueError(f"{name} == {value}, must be >= 1.")
    if n_bins < len(p):
        raise ValueError(f"n_bins == {n_bins}, must be >= len(theta3) == {len(p)}.")
    gen = as_generator(rng)
    rewards = _cost_features(n_bins) @ np.array([rc, theta11], dtype=float)
    trans, _ = _increment_transitions(n_bins, len(p))(p[:-1])
    with small_blas(n_bins):
        sol = solve_values(rewards, trans, np.ones((n_bins, 2), dtype=bool), discount)
    p_replace = sol.policy[:, 1]
    cum = np.cumsum(p)
    cum[-1] = 1.0
    u = gen.random((n_periods, 2, n_buses))
    states = np.empty((n_periods, n_buses), dtype=np.int64)
    decisions = np.empty((n_periods, n_buses), dtype=np.int64)
    increments = np.empty((n_periods, n_buses), dtype=np.int64)
    x = np.zeros(n_buses, dtype=np.int64)
    for t in range(n_periods):
        d = (u[t, 0] < p_replace[x]).astype(np.int64)
        j = np.minimum(np.searchsorted(cum, u[t, 1], side="right"), len(p) - 1)
        states[t], decisions[t], increments[t] = x, d, j
        x = np.minimum(np.where(d == 1, 0, x) + j, n_bins - 1)
    return RustData(states.T.ravel(), decisions.T.ravel(), increments.T.ravel(), n_bins, groups=())


@dataclass(frozen=True)
class RustResults:
    """Estimates of Rust's model (full likelihood, Rust's third stage).

    Attributes
    ----------
    rc, theta11 : float
        Replacement cost and maintenance-cost slope (``c(x) = 0.001 theta11 x``).
    theta3 : ndarray of shape (n_increments,)
        Probabilities of moving 0, 1, 2, ... cells in a month (the last is one minus the
        sum of the others).
    se : dict
        Standard errors (inverse outer product of the scores, BHHH) of ``rc``, ``theta11``
        and ``theta3[:-1]``.
    loglik : float
        Full log-likelihood (choices and transitions).
    loglik_choice, loglik_transition : float
    stop : str
        Why the full-likelihood iterations ended (see
        :class:`memberlab.choice._nfxp_core.BHHHResult`): ``"tol"`` or ``"floor"`` when
        converged.
    """

    rc: float
    theta11: float
    theta3: FloatArray
    se: dict[str, Any]
    loglik: float
    loglik_choice: float
    loglik_transition: float
    n_obs: int
    n_bins: int
    groups: tuple[int, ...]
    discount: float
    converged: bool
    n_iter: int
    values: FloatArray = field(repr=False)
    stop: str = "tol"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the estimates."""
        return {
            "groups": list(self.groups),
            "bins": self.n_bins,
            "beta": self.discount,
            "n_obs": self.n_obs,
            "RC": self.rc,
            "theta11": self.theta11,
            "theta3": [float(v) for v in self.theta3],
            "se": self.se,
            "loglik": self.loglik,
            "loglik_choice": self.loglik_choice,
            "loglik_transition": self.loglik_transition,
            "converged": self.converged,
            "n_iter": self.n_iter,
            "stop": self.stop,
        }

    def summary(self) -> str:
        """A plain-text table of estimates and standard errors."""
        lines = [
            f"Rust (1987) bus engines: groups {','.join(map(str, self.groups))}, "
            f"{self.n_bins} bins, beta={self.discount}, N={self.n_obs}",
            f"{'param':<10}{'estimate':>12}{'s.e.':>10}",
            f"{'RC':<10}{self.rc:>12.4f}{self.se['RC']:>10.4f}",
            f"{'theta11':<10}{self.theta11:>12.4f}{self.se['theta11']:>10.4f}",
        ]
        for j, p in enumerate(self.theta3):
            se = self.se["theta3"][j] if j < len(self.se["theta3"]) else float("nan")
            lines.append(f"{'theta3' + str(j):<10}{p:>12.4f}{se:>10.4f}")
        lines.append(f"log-likelihood {self.loglik:.3f} (converged={self.converged})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def fit_rust(
    data: RustData | None = None,
    *,
    discount: float = 0.9999,
    groups: tuple[int, ...] = (1, 2, 3, 4),
    bins: int = 175,
    path: str | os.PathLike[str] | None = None,
    method: str = "newton",
    start: tuple[float, float] = (10.0, 2.0),
    n_increments: int | None = None,
) -> RustResults:
    """Estimate Rust's model by NFXP: frequencies, then the partial, then the full likelihood.

    Parameters
    ----------
    data : RustData, optional
        Discretised data; loaded with :func:`load_rust_bus` and :func:`rust_states` if not
        given.
    discount : float in [0, 1)
    groups, bins, path
        Passed to the loader when ``data`` is not given.
    method : {"newton", "contraction"}
        Inner fixed-point solver (Newton-Kantorovich after contraction steps, or plain
        value iteration as a baseline).
    start : (RC, theta11)
        Starting values of the outer loop.

    Returns
    -------
    RustResults
    """
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount == {discount}, must be in [0, 1).")
    if data is None:
        data = rust_states(load_rust_bus(path), groups=groups, bins=bins)
    n_bins = data.n_bins
    if n_increments is None:
        n_increments = int(data.increments.max()) + 1
    n_inc = n_increments
    inc = np.minimum(data.increments, n_inc - 1)
    counts = np.bincount(inc, minlength=n_inc).astype(float)
    freq = counts / counts.sum()
    feats = _cost_features(n_bins)
    feasible = np.ones((n_bins, 2), dtype=bool)
    last = n_inc - 1

    def tll(psi: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = np.append(psi, 1.0 - psi.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = np.where(p[inc] > 0, np.log(np.where(p[inc] > 0, p[inc], 1.0)), -np.inf)
        score = np.zeros((len(inc), n_inc - 1))
        rows = np.arange(len(inc))
        mask = inc < last
        score[rows[mask], inc[mask]] = 1.0 / p[inc[mask]]
        score[~mask, :] = -1.0 / p[last]
        return ll, score

    problem = NFXPProblem(
        features=feats,
        feasible=feasible,
        discount=discount,
        states=data.states,
        actions=data.decisions,
        transitions=_increment_transitions(n_bins, n_inc),
        transition_loglik=tll,
        method=method,
    )
    psi0 = freq[:-1].copy()
    if data.decisions.sum() == 0:
        warnings.warn(
            f"no replacement in groups {data.groups}: RC is not identified (the likelihood "
            "rises as RC grows); estimates are not meaningful.",
            ConvergenceWarning,
            stacklevel=2,
        )
    with small_blas(n_bins):
        # the partial likelihood only gives the full likelihood its starting values
        stage2 = maximize_bhhh(
            problem, np.array(start, dtype=float), psi0, free_psi=False, tol=1e-6
        )
        stage3 = maximize_bhhh(problem, stage2.params[:2], psi0, free_psi=True)
    params = stage3.params
    scores = stage3.scores
    cov = np.linalg.pinv(scores.T @ scores)
    se = np.sqrt(np.abs(np.diag(cov)))
    theta3 = np.append(params[2:], 1.0 - params[2:].sum())
    tl, _ = tll(params[2:])
    ll_t = float(tl.sum())
    res = RustResults(
        rc=float(params[0]),
        theta11=float(params[1]),
        theta3=theta3,
        se={"RC": float(se[0]), "theta11": float(se[1]), "theta3": [float(v) for v in se[2:]]},
        loglik=stage3.loglik,
        loglik_choice=stage3.loglik - ll_t,
        loglik_transition=ll_t,
        n_obs=len(data.states),
        n_bins=n_bins,
        groups=data.groups,
        discount=discount,
        converged=bool(
            stage2.converged
            and stage3.converged
            and stage3.inner_converged
            and data.decisions.sum() > 0
        ),
        n_iter=stage2.n_iter + stage3.n_iter,
        values=stage3.values,
        stop=stage3.stop if stage2.converged else f"partial likelihood: {stage2.stop}",
    )
    logger.info("Rust NFXP: %s", json.dumps(res.to_dict()))
    return res


@dataclass(frozen=True)
class RustPQR:
    """PQR on the bus data with ``replace`` as the anchor, projected on Rust's form.

    Attributes
    ----------
    rc, theta11 : float
        From the weighted least-squares projection ``r(x, keep) - r(x, replace) ~ RC -
        0.001 theta11 x`` (weights: observed decisions per cell).
    rewards : ndarray of shape (n_bins, 2)
        PQR rewards (keep, replace), replace pinned at 0.
    policy : ndarray of shape (n_bins, 2)
    """

    rc: float
    theta11: float
    rewards: FloatArray
    policy: FloatArray


def rust_pqr(
    data: RustData,
    *,
    discount: float = 0.9999,
    theta3: FloatArray | None = None,
    degree: int = 2,
) -> RustPQR:
    """Tabular PQR on Rust's data with ``replace`` as anchor (its reward pinned at 0).

    The policy is a logistic regression of the replacement decision on a polynomial of
    the mileage cell (``degree``); transitions are Rust's increment model with
    probabilities ``theta3`` (frequencies by default). With the anchor's true reward
    ``-RC`` constant, the identified keep reward is ``RC - c(x)``, so projecting it on
    ``[1, -0.001 x]`` recovers ``RC`` and ``theta11``.
    """
    from sklearn.linear_model import LogisticRegression

    from memberlab.choice._pqr import pqr_tabular

    if degree < 1:
        raise ValueError(f"degree == {degree}, must be >= 1.")
    n_bins = data.n_bins
    states = data.states
    n_inc = int(data.increments.max()) + 1
    if theta3 is None:
        counts = np.bincount(data.increments, minlength=n_inc).astype(float)
        theta3 = counts / counts.sum()
    theta3 = np.asarray(theta3, dtype=float)
    trans, _ = _increment_transitions(n_bins, len(theta3))(theta3[:-1])
    grid = np.arange(n_bins, dtype=float) / 100.0
    basis = np.column_stack([grid**k for k in range(1, degree + 1)])
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    model = LogisticRegression(C=1e6, max_iter=10_000)
    with threadpool_limits(limits=1):
        model.fit(basis[states], data.decisions)
    p_rep = model.predict_proba(basis)[:, 1]
    policy = np.column_stack([1.0 - p_rep, p_rep])
    feasible = np.ones((n_bins, 2), dtype=bool)
    rewards, _, _ = pqr_tabular(policy, trans, feasible, 1, discount)
    w = np.bincount(states, minlength=n_bins).astype(float)
    x = np.column_stack([np.ones(n_bins), -0.001 * np.arange(n_bins)])
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(x * sw[:, None], rewards[:, 0] * sw, rcond=None)[0]
    return RustPQR(float(coef[0]), float(coef[1]), rewards, policy)
