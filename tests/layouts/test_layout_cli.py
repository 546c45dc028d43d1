"""``memberlab simulate layouts`` runs, writes a plot, and rejects bad options clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memberlab.cli.main import app


def test_simulate_layouts_runs_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "regret.png"
    res = CliRunner().invoke(
        app,
        [
            "simulate", "layouts", "--rounds", "600", "--seeds", "2", "--batch", "200",
            "--slots", "3", "--variants", "3", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mvt2" in res.output and "per-slot" in res.output
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--policies", "mvt3"], "'mvt3'"),
        (["--model", "cubic"], "--model == 'cubic'"),
        (["--out", "plot.svg"], "must end in .png"),
        (["--slots", "1"], "--slots"),
        (["--slots", "9", "--variants", "10", "--policies", "arm-per-layout"], "enumerates"),
    ],
)
def test_simulate_layouts_bad_options(args: list[str], match: str) -> None:
    res = CliRunner().invoke(app, ["simulate", "layouts", *args])
    assert res.exit_code != 0
    assert match in " ".join(res.output.split())
