"""Inputs that cannot mislead: each defect tried as a new user would, through the CLI.

Panels are simulated from :class:`MembershipEnv` (1,500 members x 12 months, seed 0)
and then damaged the way real files are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from memberlab.cli.main import app

runner = CliRunner()
STATE = "status,months_left,delivery,video,tier"


@pytest.fixture(scope="module")
def frame(env) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    f = env.simulate(1500, 12, rng=0)
    f["spend"] = np.round(np.random.default_rng(0).gamma(2.0, 20.0, len(f)), 2)
    return f


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _fit(  # type: ignore[no-untyped-def]
    path: Path,
    out: Path,
    *extra: str,
    state: str = STATE,
    feasible: bool = True,
    defaults: bool = False,
):
    """``choice fit``; smoothing 0.5 unless ``defaults`` (the defaults have their own test)."""
    if not defaults and "--smoothing" not in extra:
        extra = (*extra, "--smoothing", "0.5")
    args = [
        *("choice", "fit", str(path), "--id", "member", "--time", "month", "--state", state),
        *("--action", "action", "--anchor", "none", "--discount", "0.97", "--out", str(out)),
    ]
    if feasible:
        args += ["--feasible", "feasible"]
    return runner.invoke(app, [*args, *extra])


def _error(res, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in res.output, res.output


def test_continuous_state_column_is_refused_with_bins_offered(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Before: about as many states as rows, rewards of +-15 and converged=True (and NFXP
    ran for 10 minutes at 2.5 GB)."""
    p = _write(frame, tmp_path / "p.csv")
    for est in ("pqr", "nfxp"):
        res = _fit(p, tmp_path / "o", "--estimator", est, state=f"{STATE},spend")
        _error(res, "'spend' looks continuous", "--bins spend=5")


def test_bins_are_quantiles_recorded_and_applied(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = _write(frame, tmp_path / "p.csv")
    res = _fit(p, tmp_path / "o", "--bins", "spend=4", "--smoothing", "0.5", state=f"{STATE},spend")
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "o" / "results.json").read_text())
    spec = meta["info"]["bins"]["spend"]
    assert len(spec["edges"]) == 5 and len(spec["values"]) == 4
    np.testing.assert_allclose(spec["edges"], np.quantile(frame["spend"], [0, 0.25, 0.5, 0.75, 1]))
    assert set(meta["states"]["spend"]) <= set(spec["values"])
    _error(_fit(p, tmp_path / "o", "--bins", "spend=x", state=f"{STATE},spend"), "--bins")
    _error(_fit(p, tmp_path / "o", "--bins", "gold=3", state=f"{STATE},spend"), "'gold'")


def test_nfxp_refuses_past_its_limits_with_the_numbers(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An integer column with thousands of levels: NFXP states its memory and time
    before solving instead of running for minutes; the warning says states are seen once."""
    f = frame.assign(orders=np.arange(len(frame)) % 9000)
    p = _write(f, tmp_path / "p.csv")
    res = _fit(p, tmp_path / "o", "--estimator", "nfxp", state=f"{STATE},orders")
    _error(res, "NFXP on", "states and 3 actions needs about", "GiB", "max_memory")
    assert "seen in one row only" in res.output
    f = frame.assign(orders=np.arange(len(frame)))
    res = _fit(
        _write(f, tmp_path / "q.csv"), tmp_path / "o", "--estimator", "ccp", state=f"{STATE},orders"
    )
    _error(res, "dense transition model on", "GiB (limit 2.0 GiB)")


@pytest.mark.parametrize("col", ["member", "month", "action"])
def test_id_time_or_action_as_a_state_is_an_error(frame, tmp_path, col) -> None:  # type: ignore[no-untyped-def]
    p = _write(frame, tmp_path / "p.csv")
    _error(_fit(p, tmp_path / "o", state=f"status,{col}"), f"state column {col!r} is the")


def test_actions_option_and_rare_typos(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Before: 'gold' in one row became a fourth action with a constant of -3e8 and
    converged=True."""
    f = frame.copy()
    f.loc[17, "action"] = "gold"
    p = _write(f, tmp_path / "p.csv")
    res = _fit(p, tmp_path / "o", feasible=False)
    _error(res, "action 'gold'", "only 1 of 18,000 rows", "row 17", "--actions")
    res = _fit(p, tmp_path / "o", "--actions", "none,monthly,annual", feasible=False)
    _error(res, "unknown action 'gold'", "row 17")
    _error(
        _fit(p, tmp_path / "o", "--actions", "monthly,annual", feasible=False), "--anchor 'none'"
    )
    ok = _fit(_write(frame, tmp_path / "q.csv"), tmp_path / "o", "--actions", "none,monthly,annual")
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("estimator", ["pqr", "ccp"])
def test_rare_action_kept_on_purpose_is_not_trusted(frame, tmp_path, estimator) -> None:  # type: ignore[no-untyped-def]
    """Declared with --actions, the one-row action gets rewards resting on no data (CCP:
    -92, beyond any plausible scale): converged=False and a warning saying why, where it
    was converged=True."""
    f = frame.copy()
    f.loc[17, "action"] = "gold"
    # PQR needs the anchor's support, so it keeps the feasible sets (locked-in annual months
    # cannot choose the anchor); row 17's set gains the declared action.
    f.loc[17, "feasible"] = f.loc[17, "feasible"] + "|gold"
    p = _write(f, tmp_path / "p.csv")
    res = _fit(
        p, tmp_path / "o", "--actions", "none,monthly,annual,gold", "--estimator", estimator,
        feasible=estimator == "pqr",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["converged"] is False
    assert f"warning: {estimator}: not converged: action 'gold' is chosen in only 1" in res.output
    if estimator == "ccp":
        assert "beyond any plausible scale" in res.output


def test_one_non_numeric_value_names_its_row(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = frame.copy()
    f["delivery"] = f["delivery"].astype(object)
    f.loc[42, "delivery"] = "two"
    _error(_fit(_write(f, tmp_path / "p.csv"), tmp_path / "o"), "'delivery'", "'two'", "row 42")


def test_month_strings_are_periods(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = frame.copy()
    f["month"] = [f"{2024 + m // 12}-{m % 12 + 1:02d}" for m in frame["month"] + 5]
    a = _fit(_write(f, tmp_path / "d.csv"), tmp_path / "d", "--estimator", "ccp")
    b = _fit(_write(frame, tmp_path / "i.csv"), tmp_path / "i", "--estimator", "ccp")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra = pd.read_csv(tmp_path / "d" / "rewards.csv")
    rb = pd.read_csv(tmp_path / "i" / "rewards.csv")
    pd.testing.assert_frame_equal(ra, rb)
    f.loc[3, "month"] = "March"
    _error(_fit(_write(f, tmp_path / "e.csv"), tmp_path / "e"), "'March'", "row 3", "2024-01")


def test_header_only_and_empty_files(frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    head = _write(frame.head(0), tmp_path / "head.csv")
    _error(_fit(head, tmp_path / "o"), "has no rows")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _error(_fit(empty, tmp_path / "o"), str(empty), "is empty")


@pytest.mark.parametrize("estimator", ["pqr", "ccp"])
def test_cli_and_python_defaults_agree(frame, tmp_path, estimator) -> None:  # type: ignore[no-untyped-def]
    """Before: TabularPQR smoothed with 0 in Python and 0.5 from the CLI."""
    from memberlab.choice import CCP, Panel, StructuralPQR

    sub = frame[frame["member"] < 800]
    p = _write(sub, tmp_path / "p.csv")
    res = _fit(p, tmp_path / "o", "--estimator", estimator, defaults=True)
    panel = Panel.from_frame(
        sub, id="member", time="month", state=STATE.split(","), action="action",
        feasible="feasible",
    )  # fmt: skip
    est = (StructuralPQR if estimator == "pqr" else CCP)(anchor="none", discount=0.97)
    try:
        py = est.fit(panel).rewards_frame()
    except ValueError as exc:  # the library's default refuses this panel: so must the CLI
        _error(res, str(exc)[:60])
        return
    assert res.exit_code == 0, res.output
    cli = pd.read_csv(tmp_path / "o" / "rewards.csv")
    np.testing.assert_allclose(cli["reward"], py["reward"], atol=1e-9)


def test_progress_on_long_fits(frame, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import memberlab.cli.choice as cli

    monkeypatch.setattr(cli, "_PROGRESS_AFTER", 0.0)
    p = _write(frame, tmp_path / "p.csv")
    res = _fit(p, tmp_path / "o", "--estimator", "nfxp")
    assert res.exit_code == 0, res.output
    assert "progress [" in res.output and "decisions on" in res.output


def test_python_pqr_fit_is_not_trusted_on_a_rare_action(frame) -> None:  # type: ignore[no-untyped-def]
    """The library's PQR fits run the same trust checks as the CLI and CCP/NFXP."""
    from memberlab import ConvergenceWarning
    from memberlab.choice import Panel, StructuralPQR

    f = frame.copy()
    f.loc[17, "action"] = "gold"
    f.loc[17, "feasible"] = f.loc[17, "feasible"] + "|gold"
    panel = Panel.from_frame(
        f, id="member", time="month", state=STATE.split(","), action="action",
        feasible="feasible", actions=["none", "monthly", "annual", "gold"],
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning, match="action 'gold' is chosen in only 1"):
        res = StructuralPQR(anchor="none", discount=0.97).fit(panel)
    assert res.converged is False
