"""``memberlab simulate layouts``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``layouts`` command to ``memberlab simulate``."""
