"""Shared pieces of the commands that run offline jobs: executor options, progress bar,
and :class:`Job`, the one wrapping of a job in its executor and progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:  # the jobs package is imported when a command runs, not at CLI start
    from memberlab.jobs import Progress

T = TypeVar("T")

EXECUTOR_HELP = "Where tasks run: serial (default), processes (local) or ray."


def executor_option() -> Any:
    return typer.Option("serial", "--executor", help=EXECUTOR_HELP)


def workers_option() -> Any:
    return typer.Option(
        None, "--workers", min=1, help="Worker processes, or CPUs of a local Ray instance."
    )


def ray_address_option() -> Any:
    return typer.Option(
        None, "--ray-address", help="Join a running Ray cluster (host:6379 or ray://host:10001)."
    )


def make_executor(executor: str, workers: int | None, ray_address: str | None) -> Any:
    """The executor the options name; a user mistake exits with a one-line error."""
    from memberlab.jobs import BACKENDS, get_executor

    if executor not in BACKENDS:
        typer.echo(
            f"error: --executor {executor!r} must be one of {', '.join(BACKENDS)}.", err=True
        )
        raise typer.Exit(code=2)
    if ray_address is not None and executor != "ray":
        typer.echo("error: --ray-address needs --executor ray.", err=True)
        raise typer.Exit(code=2)
    return get_executor(executor, workers=workers, ray_address=ray_address)


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr (tasks done of total); a no-op when not a terminal.

    Yields the ``progress(done, total)`` callback to pass to a job.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:

        def quiet(done: int, total: int) -> None:
            return None

        yield quiet
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tid = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(tid, completed=done, total=total)

        yield update


class Job:
    """One command's job: the executor its options name, validated at once (a bad
    option is a one-line error before anything is loaded), started only by :meth:`run`.

    Usage, with the command's loading and the run inside ``user_errors()``::

        job = Job("counterfactual", executor, workers, ray_address)
        with user_errors():
            res = ChoiceResults.load(directory)
            cf = job.run(lambda ex, progress: simulate(res, executor=ex, progress=progress))
    """

    def __init__(
        self, label: str, executor: str, workers: int | None, ray_address: str | None
    ) -> None:
        self.label = label
        self.executor = make_executor(executor, workers, ray_address)

    def run(self, fn: Callable[[Any, Progress], T]) -> T:
        """Start the executor, run ``fn(executor, progress)`` under a progress bar named
        after the job and the backend, and stop the executor."""
        ex = self.executor
        with ex, progress_bar(f"{self.label} on {ex.name}") as progress:
            return fn(ex, progress)


def run_bootstrap(
    fit: Any,
    panel: Any,
    results: Any,
    out: Any,
    n_boot: int,
    seed: int,
    executor: str,
    workers: int | None,
    ray_address: str | None,
) -> None:
    """``memberlab choice fit --bootstrap B``: replicates, intervals, saved into OUT."""
    from memberlab.choice import BootstrapResults, bootstrap_replicates

    job = Job("bootstrap", executor, workers, ray_address)
    reps = job.run(
        lambda ex, progress: bootstrap_replicates(
            fit, panel, n_boot=n_boot, rng=seed, executor=ex, progress=progress
        )
    )
    BootstrapResults(results, reps, seed=seed).save(out)
    typer.echo(
        f"wrote {n_boot} bootstrap replicates ({job.executor.name}) to {out}/bootstrap/, "
        "reward_intervals.csv, coef_intervals.csv"
    )
