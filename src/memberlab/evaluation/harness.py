"""One regret harness for every simulator: a world, a batch policy, delayed feedback.

:func:`run` drives any :class:`World` (the callouts world, a layout simulator, the value
world) with a policy in batches: every request of a batch is decided with the policy's
state at the batch start; the world scores the served actions against its truth
(expected reward per named reward, and the best expected reward of the objective, for
regret) and draws the realised outcomes; each impression's feedback is held until its
delay has passed (an attribution window) and handed to the policy at the first batch end
after that, in impression order. The result is one :class:`RegretTrace`.

A world adapts its own kind of policy (:class:`~memberlab.callouts.simulator.SimPolicy`,
:class:`~memberlab.layouts.regret.BatchLearner`, :class:`~memberlab.value.WorldPolicy`)
to the :class:`BatchPolicy` the harness drives, so every existing policy runs unchanged.

Randomness: one generator, normalised once from ``rng``, is passed to the world and the
policy in a fixed order (``world.start``, ``policy.start``, then per batch
``world.requests``, ``policy.decide``, ``world.realise``), so a run is a function of
``rng`` and every policy run with the same ``rng`` on the same world meets the same
requests wherever its decisions do not consume the shared generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
from memberlab.evaluation.regret import RegretTrace

__all__ = ["BatchPolicy", "Outcome", "World", "run"]

B = TypeVar("B")
B_contra = TypeVar("B_contra", contravariant=True)
Columns = Mapping[str, NDArray[Any]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the world drew for one batch of served actions.

    Attributes
    ----------
    reward : ndarray of shape (n,)
        Realised reward of each impression (a click: 0 or 1), summed into
        :attr:`RegretTrace.clicks`.
    feedback : mapping of str to ndarray
        Columns of equal length ``n``, one row per impression: what the policy learns
        from (possibly not the realised reward, e.g. a click after its window closed).
    delay : float or ndarray of shape (n,)
        Rounds after its own round before an impression's feedback is known; 0 hands it
        to the policy at the end of its batch.
    """

    reward: FloatArray
    feedback: Columns
    delay: float | FloatArray = 0.0


class BatchPolicy(Protocol[B_contra]):
    """The policy :func:`run` drives (what :meth:`World.adapt` returns)."""

    name: str

    def start(self, rng: np.random.Generator) -> None:
        """Called once per run, after :meth:`World.start`."""

    def decide(self, requests: B_contra, rng: np.random.Generator) -> IntArray:
        """One action per request of the batch, shape (n,) or (n, ...)."""
        ...

    def update(self, feedback: Columns, t: int) -> None:
        """Feedback known by round ``t`` (a batch end), rows in impression order."""


class World(Protocol[B]):
    """A simulator with ground truth, as :func:`run` needs it.

    ``reward_names`` names the expected rewards the world scores per impression; the
    first is the objective regret is measured on.
    """

    @property
    def reward_names(self) -> tuple[str, ...]: ...

    def adapt(self, policy: Any) -> BatchPolicy[B]:
        """The world's own kind of policy, as a :class:`BatchPolicy`."""
        ...

    def start(self, n_rounds: int, rng: np.random.Generator) -> None:
        """Reset per-run state for a run of ``n_rounds`` rounds."""

    def requests(self, start: int, stop: int, rng: np.random.Generator) -> B:
        """The contexts and candidate sets of rounds ``start`` to ``stop - 1``."""
        ...

    def expected(self, requests: B, actions: IntArray) -> FloatArray:
        """Expected rewards of the served actions, shape (n, len(reward_names))."""
        ...

    def best(self, requests: B) -> FloatArray:
        """The best expected objective among each request's candidates, shape (n,)."""
        ...

    def realise(
        self, requests: B, actions: IntArray, expected: FloatArray, rng: np.random.Generator
    ) -> Outcome:
        """Draw the outcomes of the served actions (``expected`` as returned above)."""
        ...

    def is_optimal(self, action: IntArray) -> bool | None:
        """Whether ``action`` is the world's optimum (None: no single optimum)."""
        ...


@dataclass
class _Ledger:
    """Feedback waiting for its delay to pass, in impression order."""

    due: list[FloatArray]
    rows: list[Columns]

    def add(self, due: FloatArray, rows: Columns) -> None:
        self.due.append(due)
        self.rows.append(rows)

    def close(self, t: int) -> Columns | None:
        """Remove and return the rows due by ``t`` (None when there are none)."""
        if not self.due:
            return None
        due = np.concatenate(self.due)
        ready = due <= t
        if not np.any(ready):
            return None
        cols = {k: np.concatenate([r[k] for r in self.rows]) for k in self.rows[0]}
        keep = ~ready
        self.due, self.rows = [due[keep]], [{k: v[keep] for k, v in cols.items()}]
        return {k: v[ready] for k, v in cols.items()}


def _checkpoints(n_rounds: int, batch: int, n_checkpoints: int | None) -> IntArray:
    if n_checkpoints is None:  # every batch end
        return np.asarray([*range(batch, n_rounds, batch), n_rounds], dtype=np.int64)
    if n_checkpoints < 1:
        raise DataValidationError(f"n_checkpoints == {n_checkpoints}, must be >= 1 or None.")
    return np.unique(np.linspace(0, n_rounds, n_checkpoints + 1).astype(np.int64)[1:])


def _most_served(actions: list[IntArray]) -> IntArray:
    uniq, counts = np.unique(np.concatenate(actions), axis=0, return_counts=True)
    return np.asarray(uniq[int(np.argmax(counts))])


def run(
    world: World[B],
    policy: Any,
    n_rounds: int,
    *,
    batch: int = 500,
    n_checkpoints: int | None = 50,
    final_window: int = 0,
    rng: RNGLike = None,
    progress: Callable[[int], None] | None = None,
) -> RegretTrace:
    """Run ``policy`` on ``world`` for ``n_rounds`` rounds; return its regret trace.

    Parameters
    ----------
    world : World
        The simulator (:class:`~memberlab.callouts.simulator.CalloutWorld`,
        :class:`~memberlab.layouts.simulate.LayoutSimulator`,
        :class:`~memberlab.value.ValueWorld`).
    policy : object
        A policy of the world's kind (adapted with ``world.adapt``).
    n_rounds : int
        Requests in the run (>= 1).
    batch : int, default 500
        Requests decided with one policy state; feedback is handed over at batch ends.
    n_checkpoints : int or None, default 50
        Evenly spaced rounds at which cumulative regret is kept; None keeps it at every
        batch end.
    final_window : int, default 0
        With ``> 0``, the action served most in the last ``final_window`` rounds is
        :attr:`RegretTrace.final_choice`, and ``world.is_optimal`` of it
        :attr:`RegretTrace.at_optimum`.
    rng : int, Generator or None
        The run's one generator (see the module docstring for the order of its use).
    progress : callable, optional
        Called with the number of rounds done after each batch (progress bars).

    Returns
    -------
    RegretTrace
        Cumulative expected regret ``best - expected objective`` at the checkpoints,
        realised rewards, and per round the expected rewards of the served action under
        every name in ``world.reward_names`` (:attr:`RegretTrace.expected`).
    """
    if n_rounds < 1:
        raise DataValidationError(f"n_rounds == {n_rounds}, must be >= 1.")
    if batch < 1:
        raise DataValidationError(f"batch == {batch}, must be >= 1.")
    if final_window < 0:
        raise DataValidationError(f"final_window == {final_window}, must be >= 0.")
    t0 = time.perf_counter()
    gen = as_generator(rng)
    checkpoints = _checkpoints(n_rounds, batch, n_checkpoints)
    agent = world.adapt(policy)
    world.start(n_rounds, gen)
    agent.start(gen)
    names = tuple(world.reward_names)
    expected = np.empty((n_rounds, len(names)))
    cum = np.zeros(checkpoints.shape[0])
    ledger = _Ledger([], [])
    tail: list[IntArray] = []
    total, clicks, cp = 0.0, 0.0, 0
    for start in range(0, n_rounds, batch):
        stop = min(start + batch, n_rounds)
        requests = world.requests(start, stop, gen)
        actions = np.asarray(agent.decide(requests, gen), dtype=np.int64)
        exp = np.asarray(world.expected(requests, actions), dtype=np.float64)
        expected[start:stop] = exp
        reg = np.cumsum(world.best(requests) - exp[:, 0]) + total
        while cp < checkpoints.shape[0] and checkpoints[cp] <= stop:
            cum[cp] = reg[checkpoints[cp] - start - 1]
            cp += 1
        total = float(reg[-1])
        out = world.realise(requests, actions, exp, gen)
        clicks += float(np.sum(out.reward))
        ledger.add(np.arange(start, stop, dtype=np.float64) + out.delay, out.feedback)
        if final_window and stop > n_rounds - final_window:
            tail.append(actions[max(0, n_rounds - final_window - start) :])
        ready = ledger.close(stop)
        if ready is not None:
            agent.update(ready, stop)
        if progress is not None:
            progress(stop)
    final = _most_served(tail) if tail else None
    return RegretTrace(
        rounds=checkpoints,
        cumulative_regret=cum,
        name=agent.name,
        clicks=round(clicks),
        seconds=time.perf_counter() - t0,
        final_choice=final,
        at_optimum=None if final is None else world.is_optimal(final),
        expected={n: expected[:, i] for i, n in enumerate(names)},
    )
