"""``memberlab simulate callouts``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``callouts`` command to ``memberlab simulate``."""
