"""``memberlab choice counterfactual``: rewards, prices and price changes, as the library."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from memberlab.choice import (
    DEFAULT_MEMBERS,
    DEFAULT_MONTHS,
    ChoiceResults,
    counterfactual,
)
from memberlab.cli.main import app

runner = CliRunner()
STATE = "status,months_left,delivery,video,price_monthly"


@pytest.fixture(scope="module")
def model(tmp_path_factory, env):  # type: ignore[no-untyped-def]
    """Tabular PQR fitted through the CLI on 1,500 members x 12 months (seed 0)."""
    d = tmp_path_factory.mktemp("cfcli")
    env.simulate(1500, 12, rng=0).to_csv(d / "panel.csv", index=False)
    res = runner.invoke(
        app,
        [
            *("choice", "fit", str(d / "panel.csv"), "--id", "member", "--time", "month"),
            *("--state", STATE, "--action", "action", "--anchor", "none"),
            *("--discount", "0.97", "--feasible", "feasible", "--out", str(d / "m")),
            *("--smoothing", "0.5"),
        ],
    )
    assert res.exit_code == 0, res.output
    return d / "m"


def _cf(model, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["choice", "counterfactual", str(model), *args])


def test_json_shape_and_the_library_agree(model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = [
        *("--reward-shift", "annual=0.2", "--price", "monthly=price_monthly"),
        *("--price", "annual=14", "--price-change", "monthly=1.2"),
        *("--months", "4", "--members", "700", "--seed", "5", "--json"),
        *("--plot", str(tmp_path / "cf.png")),
    ]
    res = _cf(model, *args)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    share_keys = {
        "month", "action", "baseline", "baseline_lower", "baseline_upper",
        "counterfactual", "counterfactual_lower", "counterfactual_upper",
    }  # fmt: skip
    assert len(d["shares"]) == 4 * 3 and all(share_keys <= set(r) for r in d["shares"])
    month_keys = {
        "month", "churn_baseline", "churn_counterfactual", "revenue_baseline",
        "revenue_counterfactual", "revenue_baseline_lower", "revenue_baseline_upper",
        "revenue_counterfactual_lower", "revenue_counterfactual_upper",
        "churn_baseline_lower", "churn_baseline_upper",
        "churn_counterfactual_lower", "churn_counterfactual_upper",
    }  # fmt: skip
    assert [r["month"] for r in d["months"]] == [0, 1, 2, 3]
    assert all(month_keys <= set(r) for r in d["months"])
    for r in d["months"]:
        assert r["revenue_counterfactual_lower"] <= r["revenue_counterfactual"]
        assert r["revenue_counterfactual"] <= r["revenue_counterfactual_upper"]
    # churn in month 0 counts members who start on a plan and leave
    assert d["months"][0]["churn_baseline"] > 0
    (pc,) = d["query"]["price_changes"]
    assert pc["action"] == "monthly" and pc["factor"] == 1.2 and pc["price_coef"] < 0
    assert (tmp_path / "cf.png").read_bytes()[:4] == b"\x89PNG"
    # the same numbers as the library
    lib = counterfactual(
        ChoiceResults.load(model),
        {"annual": 0.2},
        prices={"monthly": "price_monthly", "annual": 14.0},
        price_change={"monthly": 1.2},
        months=4,
        n_members=700,
        rng=5,
    ).to_dict()
    assert lib["shares"] == d["shares"] and lib["months"] == d["months"]


def test_revenue_is_at_the_new_price(model) -> None:  # type: ignore[no-untyped-def]
    """A price change with no behavioural effect (price coefficient 0 is impossible here,
    so compare against the same simulation at the old price): revenue per monthly member
    rises by the factor."""
    args = ["--price", "monthly=price_monthly", "--months", "1", "--members", "2000", "--json"]
    base = json.loads(_cf(model, *args).stdout)
    up = json.loads(_cf(model, *args, "--price-change", "monthly=1.5").stdout)
    sh = pd.DataFrame(up["shares"]).set_index("action")
    rev = up["months"][0]
    # month 0: revenue = sum over members choosing monthly of 1.5 * their price
    ratio_b = base["months"][0]["revenue_baseline"] / sh.loc["monthly", "baseline"]
    ratio_c = rev["revenue_counterfactual"] / sh.loc["monthly", "counterfactual"]
    assert ratio_c / ratio_b == pytest.approx(1.5, rel=0.05)


def test_defaults_are_the_library_defaults(model) -> None:  # type: ignore[no-untyped-def]
    from memberlab.service import _choice

    assert (_choice.DEFAULT_MEMBERS, _choice.DEFAULT_MONTHS) == (DEFAULT_MEMBERS, DEFAULT_MONTHS)
    assert _choice.LEVEL == 0.95
    res = _cf(model, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["query"]["members"] == DEFAULT_MEMBERS and d["query"]["months"] == DEFAULT_MONTHS
    assert d["query"]["level"] == 0.95
    assert all(r["revenue_baseline"] is None for r in d["months"])  # no prices, no revenue


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--reward-shift", "monthly=1", "--reward-shift", "monthly=2"], "given twice"),
        (["--reward-shift", "monthly="], "must look like ACTION=DELTA"),
        (["--reward-shift", "monthly=inf"], "must be finite"),
        (["--reward-shift", "monthly=nan"], "must be finite"),
        (["--reward-shift", "monthly=abc"], "DELTA 'abc' is not a number"),
        (["--reward-shift", "gold=1"], "action 'gold' is not among"),
        (["--price-change", "monthly=1.2"], "needs the price of 'monthly' as a state column"),
        (["--price", "monthly=15", "--price-change", "monthly=1.2"], "the fixed amount 15.0"),
        (["--price", "monthly=cost"], "'cost' is neither a state column"),
        (["--price", "monthly=price_monthly", "--price-change", "monthly=0"], "finite and > 0"),
        (["--price", "monthly=price_monthly", "--price-change", "monthly=x"], "FACTOR 'x'"),
    ],
)  # fmt: skip
def test_bad_changes_are_one_line_errors(model, args, needle) -> None:  # type: ignore[no-untyped-def]
    res = _cf(model, *args, "--months", "2", "--members", "10")
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln.strip()]) == 1, res.output


def test_reward_shift_moves_shares(model) -> None:  # type: ignore[no-untyped-def]
    res = _cf(model, "--reward-shift", "monthly=-1", "--months", "3", "--members", "1000")
    assert res.exit_code == 0, res.output
    assert "plan shares" in res.output and "churn and revenue" in res.output
    d = json.loads(_cf(model, "--reward-shift", "monthly=-1", "--months", "3", "--json").stdout)
    m = [r for r in d["shares"] if r["action"] == "monthly"]
    assert np.mean([r["counterfactual"] - r["baseline"] for r in m]) < -0.05


def test_service_answers_price_changes_as_the_cli(model) -> None:  # type: ignore[no-untyped-def]
    """The service's holder (the code behind GET /v1/choice/counterfactual) parses and
    simulates a price change exactly as the command line does."""
    from memberlab.service._choice import ChoiceHolder, ChoiceQueryError, parse_query

    holder = ChoiceHolder(model)
    q = parse_query(
        holder.results,
        shift=[],
        price=["monthly=price_monthly"],
        price_change=["monthly=1.2"],
        months=3,
        members=600,
        seed=4,
    )
    body = holder.counterfactual(q)
    cli = json.loads(
        _cf(
            model,
            *("--price", "monthly=price_monthly", "--price-change", "monthly=1.2"),
            *("--months", "3", "--members", "600", "--seed", "4", "--json"),
        ).stdout
    )
    assert body["shares"] == cli["shares"] and body["by_month"] == cli["months"]
    assert body["price_changes"] == cli["query"]["price_changes"]
    with pytest.raises(ChoiceQueryError, match="needs the price of 'monthly'"):
        parse_query(
            holder.results, shift=[], price=[], price_change=["monthly=1.2"], months=3,
            members=10, seed=0,
        )  # fmt: skip
