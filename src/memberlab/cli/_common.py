"""What every command shares: one-line user errors and the database option's help."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

__all__ = ["DB_HELP", "fail", "user_errors"]

DB_HELP = (
    "SQLAlchemy URL, e.g. postgresql://user@host/db (env MEMBERLAB_DATABASE_URL). Default: "
    "SQLite memberlab.db in the user data directory: $MEMBERLAB_DATA_DIR, else "
    "$XDG_DATA_HOME/memberlab, else ~/.local/share/memberlab (never the working directory)."
)


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user mistakes into a one-line error and exit 2, never a traceback."""
    from memberlab import MemberlabError

    try:
        yield
    except typer.Exit:
        raise
    except (MemberlabError, FileNotFoundError, ValueError, KeyError, OSError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
