"""The ``memberlab choice`` commands, end to end (names other tools depend on)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from memberlab.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory, env):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("cli") / "panel.csv"
    env.simulate(1500, 12, rng=0).to_csv(path, index=False)
    return path


def _fit(panel_csv, out, estimator: str = "pqr", **extra: str):  # type: ignore[no-untyped-def]
    args = [
        "choice", "fit", str(panel_csv), "--id", "member", "--time", "month",
        "--state", "status,months_left,delivery,video,tier", "--action", "action",
        "--anchor", "none", "--discount", "0.97", "--estimator", estimator,
        "--feasible", "feasible", "--out", str(out), "--smoothing", "0.5",
    ]  # fmt: skip
    for k, v in extra.items():
        args += [f"--{k}", v]
    return runner.invoke(app, args)


@pytest.mark.parametrize("estimator", ["pqr", "ccp", "nfxp"])
def test_fit_writes_outputs(panel_csv, tmp_path, estimator) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / estimator
    res = _fit(panel_csv, out, estimator)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["estimator"] == estimator and summary["anchor"] == "none"
    rewards = pd.read_csv(out / "rewards.csv")
    assert list(rewards.columns) == [
        "status", "months_left", "delivery", "video", "tier", "action", "reward",
    ]  # fmt: skip
    assert (rewards.loc[rewards["action"] == "none", "reward"] == 0).all()
    # one row per observed state and feasible action: locked states only have "annual"
    locked = rewards[(rewards["status"] == "annual") & (rewards["months_left"] > 0)]
    assert set(locked["action"]) == {"annual"}


def test_counterfactual_json(panel_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m"
    assert _fit(panel_csv, out).exit_code == 0
    res = runner.invoke(
        app,
        [
            "choice", "counterfactual", str(out), "--reward-shift", "monthly=-0.5",
            "--reward-shift", "annual=0.25", "--months", "4", "--members", "800",
            "--seed", "3", "--json",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    rows = pd.DataFrame(payload["shares"])
    assert len(rows) == 4 * 3
    assert {"month", "action", "baseline", "counterfactual"} <= set(rows.columns)
    assert rows.groupby("month")["baseline"].sum().round(10).eq(1).all()


def test_rust_json() -> None:
    res = runner.invoke(app, ["choice", "rust", "--groups", "4", "--bins", "90", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert round(d["theta3"][0], 4) == 0.3919 and round(d["theta3"][1], 4) == 0.5953
    assert {"RC", "theta11", "loglik", "se"} <= set(d)
    res = runner.invoke(app, ["choice", "rust", "--beta", "0", "--bins", "175", "--json"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["choice", "rust", "--bins", "100"], "bins == 100"),
        (["choice", "rust", "--groups", "1,x"], "--groups"),
        (["choice", "counterfactual", "/nonexistent/dir"], "no saved choice results"),
    ],
)
def test_bad_input_is_a_clear_error(args, needle) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, args)
    assert res.exit_code != 0
    assert needle in res.output
    assert "Traceback" not in res.output


def test_fit_errors(panel_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = _fit(panel_csv, tmp_path / "x", "bogus")
    assert res.exit_code != 0 and "estimator == 'bogus'" in res.output
    res = _fit(tmp_path / "missing.csv", tmp_path / "x")
    assert res.exit_code != 0 and "does not exist" in res.output
    bad = pd.read_csv(panel_csv).drop(columns=["tier"])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    res = _fit(tmp_path / "bad.csv", tmp_path / "x")
    assert res.exit_code != 0 and "['tier'] not in the panel" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
