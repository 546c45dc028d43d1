"""Entry point of the ``memberlab`` command.

Each command group lives in its own module and is registered here, so parts of the
project can grow their commands without touching one another.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click.exceptions import ClickException, UsageError

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


def error_line(exc: BaseException) -> str:
    """One line that says what is wrong, for any error a command can meet."""
    from pydantic import ValidationError

    if isinstance(exc, UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "memberlab"
        return f"{where}: error: {exc.format_message()}"
    if isinstance(exc, ClickException):
        return f"memberlab: error: {exc.format_message()}"
    if isinstance(exc, ValidationError):
        return "memberlab: error: " + validation_message(exc)
    return f"memberlab: error: {exc}"


def validation_message(exc: Any) -> str:
    """A pydantic settings error as ``--option == value, message`` parts."""
    parts = []
    for e in exc.errors():
        name = ".".join(str(p) for p in e.get("loc", ())) or "value"
        option = f"--{name.replace('_', '-')} (MEMBERLAB_{name.upper()})"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{option} == {e.get('input')!r}: {msg}")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a command; every error is one line on stderr and exit code 2.

    An unexpected error (a bug) is one line too, with exit code 1; set
    ``MEMBERLAB_DEBUG=1`` to see its traceback.
    """
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from memberlab._errors import MemberlabError

    try:
        code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("memberlab: aborted.", err=True)
        code = 130
    except (
        ClickException,
        MemberlabError,
        ValidationError,
        SQLAlchemyError,
        OSError,
        ValueError,
    ) as exc:
        if os.environ.get("MEMBERLAB_DEBUG") == "1":
            raise
        if not (isinstance(exc, UsageError) and not exc.format_message()):  # bare help
            typer.echo(" ".join(error_line(exc).split()), err=True)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("MEMBERLAB_DEBUG") == "1":
            raise
        typer.echo(
            f"memberlab: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
            "(MEMBERLAB_DEBUG=1 shows the traceback)",
            err=True,
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
