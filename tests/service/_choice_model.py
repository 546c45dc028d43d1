"""Fit a small membership choice model with ``memberlab choice fit``, for service tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from memberlab.choice import MembershipEnv

STATE = "status,months_left,delivery,video,tier"


def fit_choice_model(directory: Path, *, members: int = 400, months: int = 12) -> Path:
    """Simulate a panel from :class:`MembershipEnv` (seed 0) and fit tabular PQR on it
    through the command line; returns the model directory (about 2 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    panel = directory / "panel.csv"
    MembershipEnv().simulate(members, months, rng=0).to_csv(panel, index=False)
    out = directory / "model"
    cmd = [
        *(sys.executable, "-m", "memberlab.cli.main", "choice", "fit", str(panel)),
        *("--id", "member", "--time", "month", "--state", STATE, "--action", "action"),
        *("--anchor", "none", "--discount", "0.97", "--estimator", "pqr", "--smoothing", "0.5"),
        *("--feasible", "feasible", "--out", str(out)),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out
