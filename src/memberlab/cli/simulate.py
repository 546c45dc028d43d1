"""``memberlab simulate``: regret experiments against simulators with ground truth.

Commands live in one module per part so each part grows its own.
"""

from __future__ import annotations

import typer

from memberlab.cli import _simulate_callouts, _simulate_layouts

app = typer.Typer(help="Run policies against simulators with known truth.", no_args_is_help=True)
_simulate_callouts.register(app)
_simulate_layouts.register(app)
