"""``memberlab logs``: export the service's logged decisions for offline evaluation."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from memberlab.cli._common import DB_HELP as _DB_HELP
from memberlab.cli._common import fail as _fail

app = typer.Typer(help="The service's decision logs: export them to Parquet.", no_args_is_help=True)


def parse_time(text: str | None, name: str) -> float | None:
    """Epoch seconds from an ISO 8601 time (UTC when no zone) or a number of seconds."""
    from memberlab import MemberlabError
    from memberlab.store._export import parse_time as _parse

    try:
        return _parse(text, f"--{name}")
    except MemberlabError as exc:
        _fail(str(exc))
        raise  # unreachable


@app.command("export")
def export(
    kind: str = typer.Option(
        "callouts", help="callouts, layouts or value (decisions of --objective value)."
    ),
    space: str | None = typer.Option(None, help="Layout space (default: every space)."),
    since: str | None = typer.Option(None, help="Only rows at or after this time (ISO 8601)."),
    until: str | None = typer.Option(None, help="Only rows before this time (ISO 8601)."),
    out: Path = typer.Option(..., help="Parquet file to write."),
    database_url: str | None = typer.Option(None, help=_DB_HELP),
    batch_size: int = typer.Option(5_000, min=1, help="Rows per query and row group."),
    early_hold: float | None = typer.Option(
        None,
        min=0,
        help="Seconds a conversion may precede its decision and still give a value row its "
        "plan (default: the early_hold the value service recorded in the database, else 60).",
    ),
) -> None:
    """Export one row per served choice (pending and closed) to a Parquet file."""
    from sqlalchemy.exc import SQLAlchemyError

    from memberlab import MemberlabError
    from memberlab.store import Store
    from memberlab.store._export import export_parquet, kind_hint

    t0, t1 = parse_time(since, "since"), parse_time(until, "until")
    try:
        store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"), migrate=False)
        n = export_parquet(
            store,
            out,
            kind=kind,
            space=space,
            since=t0,
            until=t1,
            batch_size=batch_size,
            early_hold=early_hold,
        )
        note = kind_hint(store, kind, space=space, since=t0, until=t1) if n == 0 else None
    except (MemberlabError, OSError, ValueError, SQLAlchemyError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"wrote {n} rows to {out}")
    if note is not None:
        typer.echo(f"note: {note}", err=True)
