"""``memberlab simulate callouts`` runs end to end on a tiny world (issue 2)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from memberlab.cli.main import app


def test_simulate_callouts_writes_table_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "regret.png"
    res = CliRunner().invoke(
        app,
        [
            "simulate", "callouts", "--rounds", "1000", "--seeds", "2",
            "--policies", "uniform,fixed,oracle", "--plot", str(png),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "cumulative regret" in res.output and "oracle" in res.output
    assert png.stat().st_size > 1000


def test_simulate_callouts_rejects_unknown_policy() -> None:
    res = CliRunner().invoke(app, ["simulate", "callouts", "--policies", "magic"])
    assert res.exit_code != 0
    assert "magic" in res.output
