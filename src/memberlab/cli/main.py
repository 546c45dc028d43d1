"""Entry point of the ``memberlab`` command.

Each command group lives in its own module and is registered here, so parts of the
project can grow their commands without touching one another.
"""

from __future__ import annotations

import logging

import typer

from memberlab import __version__
from memberlab.cli import choice as _choice
from memberlab.cli import evaluate as _evaluate
from memberlab.cli import experiment as _experiment
from memberlab.cli import jobs as _jobs
from memberlab.cli import logs as _logs
from memberlab.cli import service as _service
from memberlab.cli import simulate as _simulate

app = typer.Typer(
    name="memberlab",
    help="memberlab: callouts, layouts and membership choice, as a library and a service.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(_choice.app, name="choice")
app.add_typer(_simulate.app, name="simulate")
app.add_typer(_logs.app, name="logs")
app.add_typer(_evaluate.app, name="evaluate")
app.add_typer(_experiment.app, name="experiment")
app.add_typer(_jobs.app, name="jobs")
_service.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"memberlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """memberlab: callouts, layouts and membership choice, as a library and a service."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
