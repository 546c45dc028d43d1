"""``memberlab simulate``: regret experiments against simulators with ground truth."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run policies against simulators with known truth.", no_args_is_help=True)
