"""The job commands end to end: ``memberlab choice fit --bootstrap`` and ``memberlab jobs``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.choice import ChoiceResults, MembershipEnv, load_bootstrap
from memberlab.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "panel.csv"
    MembershipEnv().simulate(400, 12, rng=0).to_csv(path, index=False)
    return path


def _fit(panel_csv: Path, out: Path, *extra: str) -> object:
    args = [
        "choice", "fit", str(panel_csv), "--id", "member", "--time", "month",
        "--state", "status,months_left,delivery,video,tier", "--action", "action",
        "--anchor", "none", "--discount", "0.97", "--estimator", "ccp",
        "--feasible", "feasible", "--out", str(out), *extra,
    ]  # fmt: skip
    return runner.invoke(app, args)


def test_fit_bootstrap_writes_intervals_and_replicates_same_on_processes(
    panel_csv: Path, tmp_path: Path
) -> None:
    serial = _fit(panel_csv, tmp_path / "s", "--bootstrap", "3", "--seed", "4")
    assert serial.exit_code == 0, serial.output
    procs = _fit(
        panel_csv, tmp_path / "p", "--bootstrap", "3", "--seed", "4",
        "--executor", "processes", "--workers", "2",
    )  # fmt: skip
    assert procs.exit_code == 0, procs.output
    assert "3 bootstrap replicates (processes)" in procs.output
    for name in ("reward_intervals.csv", "coef_intervals.csv"):
        a = (tmp_path / "s" / name).read_text()
        assert a == (tmp_path / "p" / name).read_text()
    coefs = pd.read_csv(tmp_path / "p" / "coef_intervals.csv")
    assert list(coefs.columns) == ["param", "estimate", "se", "boot_sd", "lower", "upper"]
    assert (coefs["lower"] <= coefs["upper"]).all() and (coefs["boot_sd"] > 0).all()
    rew = pd.read_csv(tmp_path / "p" / "reward_intervals.csv")
    assert {"action", "reward", "boot_sd", "lower", "upper"} <= set(rew.columns)
    boot = load_bootstrap(tmp_path / "p")
    assert boot.n_boot == 3 and boot.seed == 4
    # the replicates are usable by the counterfactual (estimation-uncertainty intervals)
    from memberlab.choice import counterfactual

    cf = counterfactual(boot.results, {"monthly": 0.2}, months=2, n_members=200,
                        replicates=boot.replicates, rng=0)  # fmt: skip
    assert (cf.shares["counterfactual_lower"] <= cf.shares["counterfactual_upper"]).all()


def test_bad_executor_is_a_clear_error(panel_csv: Path, tmp_path: Path) -> None:
    res = _fit(panel_csv, tmp_path / "x", "--bootstrap", "2", "--executor", "spark")
    assert res.exit_code == 2
    assert "--executor 'spark' must be one of serial, processes, ray" in res.output
    res = _fit(panel_csv, tmp_path / "y", "--bootstrap", "2", "--ray-address", "h:6379")
    assert res.exit_code == 2 and "--ray-address needs --executor ray" in res.output


def test_jobs_counterfactual_and_ope(panel_csv: Path, tmp_path: Path) -> None:
    assert _fit(panel_csv, tmp_path / "m").exit_code == 0
    res = runner.invoke(
        app,
        ["jobs", "counterfactual", str(tmp_path / "m"), "--reward-shift", "monthly=0.3",
         "--members", "1200", "--shard-size", "500", "--months", "3", "--seed", "2", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(res.stdout))
    assert len(rows) == 9 and rows.groupby("month")["baseline"].sum().round(10).eq(1).all()
    assert ChoiceResults.load(tmp_path / "m").estimator == "ccp"

    res = runner.invoke(
        app,
        ["jobs", "member-value", str(tmp_path / "m"), "--price", "monthly=1.5",
         "--price", "annual=15", "--members", "40", "--shard-size", "20", "--horizon", "3",
         "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    values = pd.DataFrame(json.loads(res.stdout))
    assert set(values["plan"]) == {"monthly", "annual"} and "value" in values
    res = runner.invoke(app, ["jobs", "member-value", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--price is required" in res.output

    rng = np.random.default_rng(0)
    for k in range(2):
        n = 800
        pd.DataFrame(
            {
                "reward": (rng.random(n) < 0.1).astype(float),
                "propensity": np.full(n, 0.5),
                "target_propensity": rng.choice([0.0, 1.0], n),
            }
        ).to_parquet(tmp_path / f"log{k}.parquet", index=False)
    res = runner.invoke(
        app, ["jobs", "ope", str(tmp_path / "log0.parquet"), str(tmp_path / "log1.parquet"),
              "--n-boot", "20", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.DataFrame(json.loads(res.stdout)).set_index("estimator")
    assert set(table.index) == {"IPS", "SNIPS"} and (table["n"] == 1600).all()


@pytest.mark.filterwarnings("ignore::memberlab.ConvergenceWarning")
def test_jobs_score_and_refit_priors(tmp_path: Path) -> None:
    items = [{"item_id": f"i{j}", "benefit": b} for j, b in enumerate(["video", "music", "deals"])]
    rec = CalloutRecommender(catalog=Catalog.from_records(items), rng=0)
    rng = np.random.default_rng(3)
    log = [
        Feedback({"page": str(rng.choice(["a", "b"]))}, f"i{rng.integers(0, 3)}",
                 float(rng.random() < 0.15))
        for _ in range(300)
    ]  # fmt: skip
    rec.update(log)
    rec.save(tmp_path / "rec.bin")
    pd.DataFrame({"member_id": [1, 2, 3], "page": ["a", "b", "a"]}).to_parquet(
        tmp_path / "members.parquet", index=False
    )
    res = runner.invoke(
        app, ["jobs", "score", str(tmp_path / "rec.bin"), str(tmp_path / "members.parquet"),
              "--out", str(tmp_path / "scores"), "--top-k", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = pd.read_parquet(tmp_path / "scores")
    assert len(scores) == 6 and set(scores["rank"]) == {1, 2}
    for k, part in enumerate((log[:150], log[150:])):
        pd.DataFrame(
            {
                "context": [json.dumps(dict(f.context)) for f in part],
                "item_id": [f.item_id for f in part],
                "reward": [f.reward for f in part],
            }
        ).to_parquet(tmp_path / f"fb{k}.parquet", index=False)
    res = runner.invoke(
        app, ["jobs", "refit-priors", str(tmp_path / "rec.bin"), str(tmp_path / "fb0.parquet"),
              str(tmp_path / "fb1.parquet"), "--out", str(tmp_path / "refit")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "refit" / "priors.json").read_text())
    assert meta["n_rows"] == 300 and meta["n_shards"] == 2
    post = pd.read_parquet(tmp_path / "refit" / "posterior.parquet")
    assert (post["var"] > 0).all() and (post["var"] <= post["prior_var"] + 1e-12).all()


def test_a_failing_task_is_one_clear_error_naming_it(tmp_path: Path) -> None:
    good = pd.DataFrame({"reward": [1.0, 0.0], "propensity": 0.5, "target_propensity": 0.5})
    good.to_parquet(tmp_path / "a.parquet", index=False)
    good.drop(columns="propensity").to_parquet(tmp_path / "b.parquet", index=False)
    res = runner.invoke(
        app, ["jobs", "ope", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    )
    assert res.exit_code == 2
    assert "error: task 1 of 2" in res.output and "b.parquet" in res.output
    assert "propensity" in res.output and "Traceback" not in res.output
