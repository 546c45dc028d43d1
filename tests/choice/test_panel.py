from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memberlab import AnchorSupportError, DataValidationError
from memberlab.choice import Panel, TabularPQR, estimate_transitions, read_panel


def small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 1, 1, 2, 2],
            "t": [0, 1, 2, 5, 6],
            "x": [0, 1, 1, 0, 0],
            "a": ["none", "monthly", "monthly", "none", "none"],
        }
    )


def make(df: pd.DataFrame, **kw) -> Panel:  # type: ignore[no-untyped-def]
    args = {"id": "id", "time": "t", "state": ["x"], "action": "a"}
    args.update(kw)
    return Panel.from_frame(df, **args)


def test_encoding() -> None:
    p = make(small())
    assert p.n_obs == 5 and p.n_members == 2 and p.n_states == 2
    assert p.actions == ("monthly", "none")
    np.testing.assert_array_equal(p.next_state, [1, 1, -1, 0, -1])
    np.testing.assert_array_equal(p.first_states(), [0, 0])
    trans, counts = estimate_transitions(p)
    np.testing.assert_allclose(trans.sum(axis=2), 1.0)
    assert counts.sum() == 3


def test_gap_named() -> None:
    df = small()
    df.loc[4, "t"] = 8
    with pytest.raises(DataValidationError, match=r"gap in periods in column 't' for member 2"):
        make(df)


def test_duplicate_period() -> None:
    df = small()
    df.loc[1, "t"] = 0
    with pytest.raises(DataValidationError, match="duplicate periods"):
        make(df)


def test_unknown_action_named() -> None:
    with pytest.raises(DataValidationError, match=r"unknown action 'monthly'.*row 1"):
        make(small(), actions=["none", "annual"])


def test_missing_value_named() -> None:
    df = small()
    df["x"] = df["x"].astype(float)
    df.loc[3, "x"] = np.nan
    with pytest.raises(DataValidationError, match=r"missing value in column 'x' at row 3"):
        make(df)


def test_missing_column_named() -> None:
    with pytest.raises(DataValidationError, match=r"\['y'\] not in the panel"):
        make(small(), state=["y"])


def test_infeasible_action_named() -> None:
    df = small()
    df["feas"] = ["none|monthly", "monthly", "none", "none|monthly", "none"]
    with pytest.raises(DataValidationError, match=r"action 'monthly' .* infeasible .* row 2"):
        make(df, feasible="feas")


def test_anchor_never_observed() -> None:
    p = make(small(), actions=["none", "monthly", "annual"])
    with pytest.raises(AnchorSupportError, match="never observed"):
        TabularPQR(anchor="annual", discount=0.9).fit(p)


def test_read_panel(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = small()
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(read_panel(tmp_path / "p.csv"), df)
    pd.testing.assert_frame_equal(read_panel(tmp_path / "p.parquet"), df)
    with pytest.raises(FileNotFoundError):
        read_panel(tmp_path / "nope.csv")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(DataValidationError, match="extension"):
        read_panel(tmp_path / "p.txt")


def test_resample_keeps_members(env, make_panel) -> None:  # type: ignore[no-untyped-def]
    p = make_panel(env.simulate(50, 6, rng=0))
    b = p.resample(np.random.default_rng(1))
    assert b.n_obs == p.n_obs and b.n_members == p.n_members
    assert (b.next_state[np.r_[np.diff(b.member) != 0, True]] == -1).all()


def test_feasible_callable() -> None:
    def feas(states: pd.DataFrame) -> np.ndarray:
        # action order is ("monthly", "none"); state x == 1 cannot choose "none"
        out = np.ones((len(states), 2), dtype=bool)
        out[:, 1] = states["x"].to_numpy() == 0
        return out

    with pytest.raises(DataValidationError, match="infeasible"):
        df = small()
        df.loc[2, "a"] = "none"
        make(df, feasible=feas)
    p = make(small(), feasible=feas)
    assert p.feasible.sum() == 3
    with pytest.raises(DataValidationError, match="shape"):
        make(small(), feasible=lambda s: np.ones((1, 1), dtype=bool))


def test_state_may_be_one_column_name() -> None:
    """Before: ``state="x"`` was split into letters."""
    df = small().rename(columns={"x": "plan"})
    p = Panel.from_frame(df, id="id", time="t", state="plan", action="a")
    assert p.state_cols == ("plan",) and p.n_states == 2
    assert "Panel: 5 decisions of 2 members on 2 states (plan)" in repr(p)


def test_bins_recorded_and_applied_to_new_data() -> None:
    from memberlab.choice import apply_bins

    g = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(50), 4),
            "t": np.tile(np.arange(4), 50),
            "spend": g.gamma(2.0, 10.0, 200),
            "a": g.choice(["none", "monthly"], 200),
        }
    )
    with pytest.raises(DataValidationError, match=r"'spend' looks continuous.*bins=\{'spend': 5\}"):
        make(df, state=["spend"])
    p = make(df, state=["spend"], bins={"spend": 3})
    spec = p.bins["spend"]
    np.testing.assert_allclose(spec["edges"], np.quantile(df["spend"], [0, 1 / 3, 2 / 3, 1]))
    assert p.n_states == 3
    assert sorted(p.states["spend"]) == sorted(spec["values"])
    new = apply_bins([0.0, spec["edges"][1] + 1e-9, 1e9], spec)
    np.testing.assert_allclose(new, [spec["values"][0], spec["values"][1], spec["values"][2]])
    with pytest.raises(DataValidationError, match=r"bins\['spend'\] == 1"):
        make(df, state=["spend"], bins={"spend": 1})


def test_datetime_periods_are_months() -> None:
    df = small()
    df["t"] = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2023-12-01", "2024-01-01"])
    p = make(df)
    np.testing.assert_array_equal(p.next_state, [1, 1, -1, 0, -1])
    df.loc[1, "t"] = pd.Timestamp("2024-04-01")
    with pytest.raises(DataValidationError, match="gap in periods"):
        make(df)


def test_read_panel_takes_a_frame_and_names_empty_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = small()
    assert read_panel(df) is df
    with pytest.raises(DataValidationError, match="no rows"):
        read_panel(df.head(0))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataValidationError, match=r"e\.csv' is empty"):
        read_panel(tmp_path / "e.csv")
    df.head(0).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(DataValidationError, match="has no rows"):
        read_panel(tmp_path / "h.csv")
    with pytest.raises(DataValidationError, match="has no rows"):
        Panel.from_frame(df.head(0), id="id", time="t", state="x", action="a")
