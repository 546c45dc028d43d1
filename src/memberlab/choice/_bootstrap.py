"""Bootstrap replicates of any choice estimator over members, on any executor.

Each replicate refits the estimator on a panel whose members are drawn with replacement
(:meth:`Panel.resample`). Replicate ``b`` draws from the ``b``-th child of the job's
seed (``SeedSequence(seed).spawn(n_boot)[b]``), so the replicates are the same - to the
bit - serially, on local processes or on Ray, with any number of workers. The
replicates are saved next to the model (``bootstrap/``, each a normal
:class:`ChoiceResults` directory), with percentile intervals for the rewards and the
reward coefficients, so counterfactuals and member value can use them later.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike
from memberlab._typing import FloatArray
from memberlab.choice._panel import Panel
from memberlab.choice._results import ChoiceResults

if TYPE_CHECKING:
    from memberlab.jobs import Executor, Progress

__all__ = [
    "BOOTSTRAP_DIR",
    "BootstrapResults",
    "bootstrap_replicates",
    "load_bootstrap",
    "reward_intervals",
]

logger = logging.getLogger(__name__)

#: Sub-directory of a model directory holding the replicates.
BOOTSTRAP_DIR = "bootstrap"
_META = "bootstrap.json"
_BOOT_SCHEMA = 1


def _replicate(
    shared: tuple[Callable[[Panel], ChoiceResults], Panel], seed: np.random.SeedSequence
) -> ChoiceResults:
    """One bootstrap refit (a task; module level so it pickles by reference)."""
    fit, panel = shared
    return fit(panel.resample(np.random.default_rng(seed)))


def bootstrap_replicates(
    fit: Callable[[Panel], ChoiceResults],
    panel: Panel,
    *,
    n_boot: int = 50,
    rng: RNGLike = None,
    executor: Executor | str | None = None,
    progress: Progress | None = None,
) -> list[ChoiceResults]:
    """Refit on ``n_boot`` panels resampled over members, one task per replicate.

    Parameters
    ----------
    fit : callable
        ``panel -> ChoiceResults``, e.g. ``TabularPQR(...).fit``; must pickle for the
        processes and Ray backends (a bound method of an estimator does).
    panel : Panel
        Sent to each worker once.
    n_boot : int
        Replicates (>= 1).
    rng : int, SeedSequence, Generator or None
        Seed of the job; replicate ``b`` uses its ``b``-th spawned child.
    executor : Executor, {"serial", "processes", "ray"} or None
        Where to run (default serial). A name starts and stops its executor here.
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    list of ChoiceResults, in replicate order
    """
    from memberlab.jobs import Executor, get_executor, task_seeds

    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise DataValidationError(f"n_boot == {n_boot!r}, must be an integer >= 1.")
    seeds = task_seeds(rng, int(n_boot))
    ex = get_executor(executor)
    if isinstance(executor, Executor):
        return ex.map(_replicate, seeds, shared=(fit, panel), desc="bootstrap", progress=progress)
    with ex:
        return ex.map(_replicate, seeds, shared=(fit, panel), desc="bootstrap", progress=progress)


def _percentiles(arr: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi


@dataclass(frozen=True)
class BootstrapResults:
    """A fitted model and its bootstrap replicates.

    Attributes
    ----------
    results : ChoiceResults
        The fit on the full panel.
    replicates : list of ChoiceResults
        Refits on member-resampled panels, in replicate order.
    alpha : float
        Intervals at level ``1 - alpha``.
    seed : int or None
        The job's seed, if an int.
    """

    results: ChoiceResults
    replicates: list[ChoiceResults]
    alpha: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.replicates:
            raise DataValidationError("replicates is empty, must hold at least one.")
        if not 0 < self.alpha < 1:
            raise DataValidationError(f"alpha == {self.alpha}, must be in (0, 1).")

    @property
    def n_boot(self) -> int:
        return len(self.replicates)

    def reward_intervals(self) -> pd.DataFrame:
        """One row per feasible (state, action): reward, bootstrap s.d. and interval.

        Returns
        -------
        DataFrame
            The columns of :meth:`ChoiceResults.rewards_frame` plus ``boot_sd, lower,
            upper``.
        """
        res = self.results
        lo, hi = reward_intervals(self.replicates, alpha=self.alpha)
        sd = np.array([r.rewards for r in self.replicates]).std(axis=0, ddof=1)
        s_idx, a_idx = np.nonzero(res.feasible)
        out = res.rewards_frame()
        out["boot_sd"] = sd[s_idx, a_idx] if self.n_boot > 1 else np.nan
        out["lower"] = lo[s_idx, a_idx]
        out["upper"] = hi[s_idx, a_idx]
        return out

    def coef_intervals(self) -> pd.DataFrame:
        """Reward coefficients (CCP, NFXP): estimate, s.e., bootstrap s.d. and interval.

        Empty for estimators without parametric rewards (PQR).

        Returns
        -------
        DataFrame with columns param, estimate, se, boot_sd, lower, upper
        """
        res = self.results
        cols = ["param", "estimate", "se", "boot_sd", "lower", "upper"]
        if len(res.params) == 0:
            return pd.DataFrame(columns=cols)
        arr = np.array([r.params for r in self.replicates])
        lo, hi = _percentiles(arr, self.alpha)
        sd = arr.std(axis=0, ddof=1) if self.n_boot > 1 else np.full(arr.shape[1], np.nan)
        se = res.se if len(res.se) == len(res.params) else np.full(len(res.params), np.nan)
        return pd.DataFrame(
            {
                "param": list(res.param_names),
                "estimate": res.params,
                "se": se,
                "boot_sd": sd,
                "lower": lo,
                "upper": hi,
            },
            columns=cols,
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the replicates and intervals into a model directory.

        Writes ``bootstrap/bootstrap.json``, ``bootstrap/NNNN/`` (one
        :meth:`ChoiceResults.save` per replicate), ``reward_intervals.csv`` and
        ``coef_intervals.csv``. The model itself is saved by the caller.
        """
        d = Path(directory)
        boot = d / BOOTSTRAP_DIR
        boot.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(self.n_boot - 1)))
        names = []
        for b, rep in enumerate(self.replicates):
            name = f"{b:0{width}d}"
            rep.save(boot / name)
            names.append(name)
        meta = {
            "schema_version": _BOOT_SCHEMA,
            "kind": "memberlab.choice.BootstrapResults",
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "seed": self.seed,
            "replicates": names,
        }
        (boot / _META).write_text(json.dumps(meta, indent=2))
        self.reward_intervals().to_csv(d / "reward_intervals.csv", index=False)
        self.coef_intervals().to_csv(d / "coef_intervals.csv", index=False)
        return d


def load_bootstrap(directory: str | os.PathLike[str]) -> BootstrapResults:
    """Read a model directory written by ``memberlab choice fit --bootstrap B``.

    Raises
    ------
    FileNotFoundError
        If the directory has no ``bootstrap/bootstrap.json``.
    """
    from memberlab._errors import SchemaVersionError

    d = Path(directory)
    meta_path = d / BOOTSTRAP_DIR / _META
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"no bootstrap replicates in {str(d)!r} (fit with --bootstrap B to make them)."
        )
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("schema_version") != _BOOT_SCHEMA:
        raise SchemaVersionError(
            f"schema_version == {meta.get('schema_version')!r} in {str(meta_path)!r}, "
            f"this release reads only {_BOOT_SCHEMA}."
        )
    reps = [ChoiceResults.load(d / BOOTSTRAP_DIR / n) for n in meta["replicates"]]
    return BootstrapResults(
        ChoiceResults.load(d), reps, alpha=float(meta["alpha"]), seed=meta.get("seed")
    )


def reward_intervals(
    replicates: Sequence[ChoiceResults], *, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    """Percentile intervals of rewards over bootstrap replicates, each (n_states, n_actions)."""
    if not replicates:
        raise ValueError("replicates is empty, must hold at least one ChoiceResults.")
    arr = np.array([r.rewards for r in replicates])
    lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi
