"""Regret traces, their summaries and their plots: one of each for every policy kind.

The one run loop, :func:`memberlab.evaluation.harness.run` (behind the simulators'
:func:`~memberlab.callouts.simulator.run_policy`,
:func:`~memberlab.layouts.regret.run_regret` and :func:`~memberlab.value.run_value_world`),
returns a :class:`RegretTrace`;
:func:`summarise` turns many seeds into mean and standard error per policy and
:func:`plot_regret` draws mean cumulative regret with a +-1 standard-error band. The
callouts and layouts CLIs and benchmarks use these, not copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memberlab._typing import FloatArray, IntArray

__all__ = ["RegretSummary", "RegretTrace", "plot_regret", "summarise"]


@dataclass(frozen=True, slots=True)
class RegretTrace:
    """Cumulative expected regret of one run of one policy, and its rewards per round.

    Attributes
    ----------
    rounds : ndarray of shape (n_checkpoints,)
        Round count at each checkpoint.
    cumulative_regret : ndarray of shape (n_checkpoints,)
        Cumulative expected regret at each checkpoint.
    name : str
        The policy.
    clicks : int
        Realised rewards (clicks) the policy obtained.
    seconds : float
        Wall time of the run.
    final_choice : ndarray, optional
        What the policy served most at the end (layouts: variant index per slot).
    at_optimum : bool, optional
        Whether ``final_choice`` is the simulator's optimum.
    extra : dict of str to float
        Anything else the harness measured.
    expected : dict of str to ndarray of shape (n_rounds,)
        Per round, the expected reward of the served action under each of the world's
        named rewards, in the world's order (the first is the objective regret is
        measured on): ``"clicks"`` in the callouts and layouts worlds, ``"value"`` and
        ``"clicks"`` in the value world.
    """

    rounds: IntArray
    cumulative_regret: FloatArray
    name: str = ""
    clicks: int = 0
    seconds: float = 0.0
    final_choice: IntArray | None = None
    at_optimum: bool | None = None
    extra: dict[str, float] = field(default_factory=dict)
    expected: dict[str, FloatArray] = field(default_factory=dict)

    def last_quarter(self) -> tuple[float, ...]:
        """Mean of every :attr:`expected` column over the last quarter of rounds.

        The value world's trace gives ``(value per impression, click rate)``.
        """
        return tuple(float(v[len(v) * 3 // 4 :].mean()) for v in self.expected.values())

    @property
    def total(self) -> float:
        """Cumulative regret at the last checkpoint (0 for an empty trace)."""
        return float(self.cumulative_regret[-1]) if self.cumulative_regret.size else 0.0

    @property
    def cum_regret(self) -> FloatArray:
        """Alias of :attr:`cumulative_regret` (the callouts trace's earlier name)."""
        return self.cumulative_regret

    @property
    def final_layout(self) -> IntArray | None:
        """Alias of :attr:`final_choice` (the layouts trace's earlier name)."""
        return self.final_choice


@dataclass(frozen=True, slots=True)
class RegretSummary:
    """Many seeds of one policy: final regret mean and standard error, mean curve.

    ``clicks`` and ``seconds`` are means per run; ``at_optimum`` is the share of runs
    whose final choice is the optimum (None when the runs do not say).
    """

    name: str
    n_runs: int
    mean: float
    se: float
    rounds: IntArray
    curve_mean: FloatArray
    curve_se: FloatArray
    clicks: float
    seconds: float
    at_optimum: float | None = None


def summarise(traces: Mapping[str, Sequence[RegretTrace]]) -> dict[str, RegretSummary]:
    """Mean and standard error (``ddof=1``; 0 for one run) of every policy's runs."""
    out: dict[str, RegretSummary] = {}
    for name, runs in traces.items():
        if not runs:
            continue
        Y = np.stack([r.cumulative_regret for r in runs])
        n = Y.shape[0]
        se = Y.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(Y.shape[1])
        final = Y[:, -1] if Y.shape[1] else np.zeros(n)
        out[name] = RegretSummary(
            name=name,
            n_runs=n,
            mean=float(final.mean()),
            se=float(final.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
            rounds=runs[0].rounds,
            curve_mean=Y.mean(axis=0),
            curve_se=se,
            clicks=float(np.mean([r.clicks for r in runs])),
            seconds=float(np.mean([r.seconds for r in runs])),
            at_optimum=(
                float(np.mean([bool(r.at_optimum) for r in runs]))
                if all(r.at_optimum is not None for r in runs)
                else None
            ),
        )
    return out


def plot_regret(
    traces: Mapping[str, Sequence[RegretTrace]] | Mapping[str, RegretSummary],
    path: str | Path,
    *,
    title: str = "",
    ylabel: str = "cumulative expected regret",
) -> Path:
    """Mean cumulative regret with a +-1 standard-error band per policy, as a PNG.

    ``traces`` maps a policy name to its runs, or to a :class:`RegretSummary`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries: dict[str, RegretSummary] = {}
    for name, v in traces.items():
        if isinstance(v, RegretSummary):
            summaries[name] = v
        else:
            summaries.update(summarise({name: v}))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, s in summaries.items():
        ax.plot(s.rounds, s.curve_mean, label=name)
        ax.fill_between(s.rounds, s.curve_mean - s.curve_se, s.curve_mean + s.curve_se, alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
