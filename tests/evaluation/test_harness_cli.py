"""``memberlab simulate callouts --plot ''`` skips the plot, as its help says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_simulate_callouts_empty_plot_writes_no_file(tmp_path: Path) -> None:
    """A real process in an empty directory: the table, and no file (an empty path used
    to become ``Path('.')``, written as a hidden ``.png`` in the working directory)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    cmd = [
        sys.executable, "-m", "memberlab.cli.main", "simulate", "callouts",
        "--rounds", "500", "--seeds", "1", "--policies", "uniform,oracle", "--plot", "",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "oracle" in res.stdout and "written" not in res.stdout
    assert list(tmp_path.iterdir()) == []
