"""Benefit portfolio: `memberlab choice compare` and `compare_scenarios`, against truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from memberlab.choice import MembershipEnv
from memberlab.cli.main import app
from memberlab.value import ENV_PRICES, Scenario, compare_scenarios, true_results

runner = CliRunner()
STATE = "status,months_left,delivery,video,tier,price_monthly,price_annual"


def _exact_path(env: MembershipEnv, shift: np.ndarray, price: np.ndarray, months: int):  # type: ignore[no-untyped-def]
    """Exact revenue per member and share on a plan by month (propagation)."""
    res = true_results(env)
    pol = res.solve(res.rewards + shift).policy
    dist = np.bincount(res.first_states, minlength=env.n_states).astype(float)
    dist /= dist.sum()
    choice = env.feasible.sum(axis=1) > 1
    pay = price * choice[:, None]
    rev, on = 0.0, []
    for _ in range(months):
        joint = dist[:, None] * pol
        rev += float((joint * pay).sum())
        on.append(1.0 - joint[:, 0].sum())
        dist = np.einsum("sa,ast->t", joint, env.transitions)
    return rev, np.array(on)


def test_price_change_matches_truth(env: MembershipEnv) -> None:
    """On the true model a 20% monthly price rise: revenue at the new price and the share
    on a plan match exact propagation (20,000 members, seed 0; 3 s.e. of a mean)."""
    res = true_results(env)
    cmp = compare_scenarios(
        res,
        {"dearer": "--price-change monthly=1.2", "video": Scenario(reward_shift={"annual": 0.3})},
        prices=ENV_PRICES,
        months=18,
        n_members=20_000,
        rng=0,
    )
    price = np.zeros((env.n_states, 3))
    price[:, 1] = env.states["price_monthly"]
    price[:, 2] = env.states["price_annual"]
    # the true price coefficient is -alpha_price = -1 (theta[5])
    shift = np.zeros((env.n_states, 3))
    shift[:, 1] = -env.theta[5] * 0.2 * env.states["price_monthly"]
    dearer = price.copy()
    dearer[:, 1] *= 1.2
    for name, sh, pr in (("baseline", 0 * shift, price), ("dearer", shift, dearer)):
        rev, on = _exact_path(env, np.where(env.feasible, sh, 0.0), pr, 18)
        row = cmp.table.set_index("scenario").loc[name]
        assert row["revenue"] == pytest.approx(rev, rel=0.03), name
        assert row["members_end"] == pytest.approx(on[-1], abs=0.012), name
    t = cmp.table.set_index("scenario")
    assert t.loc["dearer", "retention_diff_upper"] < 0 < t.loc["video", "retention_diff_lower"]
    assert cmp.ranking("revenue")[0] == "video"
    assert t.loc["baseline", "revenue_diff"] == 0


def test_scenario_spec_errors() -> None:
    sc = Scenario.parse(
        "--reward-shift monthly=0.3 --reward-shift=annual=0.1 --price-change monthly=1.1"
    )
    assert sc.reward_shift == {"monthly": 0.3, "annual": 0.1} and sc.price_change == {
        "monthly": 1.1
    }
    for bad, msg in (
        ("--reward-shift monthly", "ACTION=NUMBER"),
        ("--reward-shift monthly=x", "not a number"),
        ("--reward-shift monthly=1 --reward-shift monthly=2", "twice"),
        ("--price-change monthly=0", "must be > 0"),
        ("--bogus monthly=1", "--bogus"),
        ("", "changes nothing"),
        ("--reward-shift monthly=nan", "not finite"),
    ):
        with pytest.raises(ValueError, match=msg):
            Scenario.parse(bad)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, env):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("compare")
    env.simulate(3000, 18, rng=0).to_csv(d / "panel.csv", index=False)
    res = runner.invoke(
        app,
        [
            "choice", "fit", str(d / "panel.csv"), "--id", "member", "--time", "month",
            "--state", STATE, "--action", "action", "--anchor", "none", "--discount", "0.97",
            "--feasible", "feasible", "--out", str(d / "model"),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return d / "model"


def test_compare_cli_process(model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real command in a child process: JSON, ranking, plot."""
    png = tmp_path / "cmp.png"
    cmd = [
        sys.executable, "-m", "memberlab.cli.main", "choice", "compare", str(model_dir),
        "--scenario", "video=--reward-shift monthly=0.4 --reward-shift annual=0.4",
        "--scenario", "dearer=--price-change monthly=1.25",
        "--price", "monthly=price_monthly", "--price", "annual=price_annual",
        "--months", "12", "--members", "4000", "--seed", "5", "--plot", str(png), "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    names = [s["scenario"] for s in payload["scenarios"]]
    assert names == ["baseline", "video", "dearer"]
    by = {s["scenario"]: s for s in payload["scenarios"]}
    assert by["video"]["retention_diff_lower"] > 0
    assert by["dearer"]["retention_diff_upper"] < 0
    assert payload["ranking"]["retention"] == ["video", "dearer"]
    for s in payload["scenarios"][1:]:
        assert s["revenue_diff_lower"] <= s["revenue_diff"] <= s["revenue_diff_upper"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(app, cmd[3:])  # the same command in process: seeded, same answer
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == payload


def test_compare_cli_table_and_errors(model_dir) -> None:  # type: ignore[no-untyped-def]
    ok = runner.invoke(
        app,
        [
            "choice", "compare", str(model_dir), "--scenario", "v=--reward-shift annual=0.3",
            "--price", "monthly=price_monthly", "--price", "annual=14", "--months", "6",
            "--members", "500",
        ],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "baseline" in ok.output and "retention" in ok.output
    base = ["choice", "compare", str(model_dir), "--price", "monthly=price_monthly"]
    for extra, msg in (
        (["--scenario", "novalue"], "NAME=SPEC"),
        (["--scenario", "a=--reward-shift gold=1"], "'gold'"),
        (["--scenario", "a=--reward-shift monthly=x"], "not a number"),
        (["--scenario", "a=--price-change annual=1.1"], "must be a state column"),
        (["--scenario", "baseline=--reward-shift monthly=1"], "reserved"),
        (["--scenario", "a=--reward-shift monthly=1", "--price", "annual=nocol"], "nocol"),
    ):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert msg in res.output, (extra, res.output)
        assert "Traceback" not in res.output


def test_price_coefficient_recovered(env: MembershipEnv, pqr_large) -> None:  # type: ignore[no-untyped-def]
    """TabularPQR on 960,000 member-months (seed 1): the price coefficient of both plans
    within 0.1 of the truth, -alpha_price = -1 (the price tier, which determines the
    prices, is left out of the controls)."""
    from memberlab.choice import price_coefficient

    res = pqr_large
    for plan, col in ENV_PRICES.items():
        assert price_coefficient(res, action=plan, price=col) == pytest.approx(-1.0, abs=0.1)
    assert price_coefficient(true_results(env), action="monthly", price="price_monthly") == (
        pytest.approx(-1.0, abs=1e-9)
    )


def test_compare_with_bootstrap_replicates(env: MembershipEnv) -> None:
    """Intervals from 4 bootstrap refits (seed 2) instead of a bootstrap over members."""
    from memberlab.choice import Panel, TabularPQR, bootstrap

    frame = env.simulate(2000, 12, rng=3)
    panel = Panel.from_frame(
        frame,
        id="member",
        time="month",
        state=STATE.split(","),
        action="action",
        actions=["none", "monthly", "annual"],
        feasible="feasible",
    )
    est = TabularPQR(anchor="none", discount=env.discount, smoothing=0.5)
    res = est.fit(panel)
    reps = bootstrap(est.fit, panel, n_boot=4, rng=2)
    cmp = compare_scenarios(
        res,
        {"video": "--reward-shift monthly=0.5 --reward-shift annual=0.5"},
        prices=ENV_PRICES,
        months=6,
        n_members=1000,
        replicates=reps,
        rng=1,
    )
    row = cmp.table.set_index("scenario").loc["video"]
    assert cmp.info["n_replicates"] == 4
    assert row["revenue_diff_lower"] <= row["revenue_diff_upper"]
    assert row["retention_diff_lower"] > 0  # a benefit worth 0.5 a month keeps members


def test_compare_cli_uses_the_bootstrap_replicates_choice_fit_wrote(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    """``choice fit --bootstrap 3`` then ``choice compare``: the intervals are the
    percentiles over the three replicates (the library's compare_scenarios with the
    loaded replicates gives the same numbers), not the bootstrap over members; without
    --price the plans pay their price_<plan> state columns."""
    from memberlab.choice import ChoiceResults, load_bootstrap
    from memberlab.value import compare_scenarios

    env.simulate(1500, 12, rng=4).to_csv(tmp_path / "panel.csv", index=False)
    fit = runner.invoke(
        app,
        [
            "choice", "fit", str(tmp_path / "panel.csv"), "--id", "member", "--time", "month",
            "--state", STATE, "--action", "action", "--anchor", "none", "--discount", "0.97",
            "--feasible", "feasible", "--bootstrap", "3", "--out", str(tmp_path / "model"),
        ],
    )  # fmt: skip
    assert fit.exit_code == 0, fit.output
    cmd = [
        "choice", "compare", str(tmp_path / "model"), "--scenario",
        "video=--reward-shift annual=0.5", "--months", "6", "--members", "800", "--seed", "2",
        "--json",
    ]  # fmt: skip
    out = runner.invoke(app, cmd)
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["interval_source"] == "replicates"
    boot = load_bootstrap(tmp_path / "model")
    lib = compare_scenarios(
        ChoiceResults.load(tmp_path / "model"),
        {"video": "--reward-shift annual=0.5"},
        prices=ENV_PRICES,
        months=6,
        n_members=800,
        replicates=boot.replicates,
        rng=2,
    ).to_dict()
    assert payload["scenarios"] == lib["scenarios"]
    members = compare_scenarios(
        ChoiceResults.load(tmp_path / "model"),
        {"video": "--reward-shift annual=0.5"},
        prices=ENV_PRICES,
        months=6,
        n_members=800,
        rng=2,
    ).to_dict()
    row = {s["scenario"]: s for s in payload["scenarios"]}["video"]
    other = {s["scenario"]: s for s in members["scenarios"]}["video"]
    assert row["revenue_diff"] == other["revenue_diff"]  # the same point estimate
    assert row["revenue_diff_lower"] != other["revenue_diff_lower"]  # other intervals
