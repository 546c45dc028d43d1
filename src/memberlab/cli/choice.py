"""``memberlab choice``: fit dynamic discrete choice models and simulate counterfactuals."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Membership choice: fit PQR, CCP or NFXP; counterfactuals; Rust's bus data.",
    no_args_is_help=True,
)
