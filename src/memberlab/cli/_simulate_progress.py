"""The progress bar of every ``memberlab simulate`` command: rounds done of all runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def rounds_progress(console: Console) -> Progress:
    """A rich progress bar counting simulated rounds, with elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} rounds"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
