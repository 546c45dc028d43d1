"""``memberlab choice``: fit dynamic discrete choice models and simulate counterfactuals."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from memberlab.cli import _jobs

app = typer.Typer(
    help="Membership choice: fit PQR, CCP or NFXP; counterfactuals; Rust's bus data.",
    no_args_is_help=True,
)

_ESTIMATORS = ("pqr", "pqr-fa", "ccp", "nfxp")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn user mistakes into a one-line error and a non-zero exit, never a traceback."""
    from memberlab import MemberlabError

    try:
        yield
    except typer.Exit:
        raise
    except (MemberlabError, FileNotFoundError, ValueError, KeyError, OSError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        _fail(msg)


@contextmanager
def _spinner(text: str) -> Iterator[None]:
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with console.status(text):
            yield
    else:
        yield


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@app.command("fit")
def fit(
    panel: Path = typer.Argument(..., help="Panel file, CSV or Parquet."),
    id_col: str = typer.Option(..., "--id", help="Member id column."),
    time_col: str = typer.Option(..., "--time", help="Period column (consecutive integers)."),
    state: str = typer.Option(..., "--state", help="Comma-separated state columns."),
    action: str = typer.Option(..., "--action", help="Action column."),
    anchor: str = typer.Option(..., "--anchor", help="Anchor action (reward fixed at 0)."),
    discount: float = typer.Option(..., "--discount", help="Discount factor in [0, 1)."),
    estimator: str = typer.Option("pqr", "--estimator", help="pqr, pqr-fa, ccp or nfxp."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    feasible: str = typer.Option(
        "", "--feasible", help="Column of '|'-separated feasible actions per row (optional)."
    ),
    smoothing: float = typer.Option(
        0.5, "--smoothing", help="Pseudo-count per feasible action in the policy (pqr, ccp)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the pqr-fa learners and the bootstrap."),
    bootstrap: int = typer.Option(
        0, "--bootstrap", min=0, help="Bootstrap replicates over members (0: none)."
    ),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
) -> None:
    """Fit a model on a panel; write the results, summary.json and rewards.csv to OUT.

    With ``--bootstrap B`` also refit on B member-resampled panels (on the chosen
    executor; the replicates do not depend on it) and write reward_intervals.csv,
    coef_intervals.csv and the replicates (bootstrap/) to OUT.

    CCP and NFXP use a linear-in-state-features reward per non-anchor action (an
    intercept and one slope per state column; categorical columns one-hot coded).
    """
    from memberlab.choice import CCP, NFXP, PQR, Panel, TabularPQR, read_panel

    if estimator not in _ESTIMATORS:
        _fail(f"estimator == {estimator!r}, must be one of {', '.join(_ESTIMATORS)}.")
    with _user_errors():
        frame = read_panel(panel)
        cols = [c.strip() for c in state.split(",") if c.strip()]
        with _spinner("validating the panel"):
            p = Panel.from_frame(
                frame,
                id=id_col,
                time=time_col,
                state=cols,
                action=action,
                feasible=feasible or None,
            )
        est: Any
        if estimator == "pqr":
            est = TabularPQR(anchor=anchor, discount=discount, smoothing=smoothing)
        elif estimator == "pqr-fa":
            est = PQR(anchor=anchor, discount=discount, rng=seed)
        elif estimator == "ccp":
            est = CCP(anchor=anchor, discount=discount, smoothing=smoothing)
        else:
            est = NFXP(anchor=anchor, discount=discount)
        with (
            _spinner(f"fitting {estimator} on {p.n_obs:,} decisions"),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            res = est.fit(p)
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
        res.info["panel"] = str(panel)
        res.info["id_col"] = id_col
        res.info["time_col"] = time_col
        res.info["action_col"] = action
        res.save(out)
        summ = res.summary_dict()
        (Path(out) / "summary.json").write_text(json.dumps(summ, indent=2, default=_clean))
        res.rewards_frame().to_csv(Path(out) / "rewards.csv", index=False)
        if bootstrap:
            _jobs.run_bootstrap(
                est.fit, p, res, out, bootstrap, seed, executor, workers, ray_address
            )
    typer.echo(res.summary())
    typer.echo(f"wrote {out}/results.json, arrays.npz, summary.json, rewards.csv")


def _parse_shift(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        if "=" not in item:
            _fail(f"--reward-shift {item!r} must look like ACTION=DELTA (e.g. monthly=0.5).")
        label, _, value = item.partition("=")
        try:
            out[label.strip()] = float(value)
        except ValueError:
            _fail(f"--reward-shift {item!r}: DELTA {value!r} is not a number.")
    return out


@app.command("counterfactual")
def counterfactual_cmd(
    directory: Path = typer.Argument(..., help="Directory written by 'memberlab choice fit'."),
    reward_shift: list[str] = typer.Option(
        [], "--reward-shift", help="ACTION=DELTA, added to the action's reward (repeatable)."
    ),
    months: int = typer.Option(12, "--months", min=1, help="Months to simulate."),
    members: int = typer.Option(10_000, "--members", min=1, help="Simulated members."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Simulate members from the panel's first-period states, baseline vs shifted rewards."""
    from memberlab.choice import ChoiceResults, counterfactual

    shift = _parse_shift(reward_shift)
    with _user_errors():
        res = ChoiceResults.load(directory)
        for label in shift:
            res.action_index(label)
        with _spinner(f"simulating {members:,} members for {months} months"):
            cf = counterfactual(res, shift, months=months, n_members=members, rng=seed)
    table = cf.shares
    if as_json:
        payload = {
            "months": months,
            "members": members,
            "seed": seed,
            "reward_shift": shift,
            "shares": [
                {
                    "month": int(r["month"]),
                    "action": str(r["action"]),
                    "baseline": float(r["baseline"]),
                    "counterfactual": float(r["counterfactual"]),
                    "difference": float(r["difference"]),
                    "counterfactual_lower": float(r["counterfactual_lower"]),
                    "counterfactual_upper": float(r["counterfactual_upper"]),
                }
                for r in table.to_dict("records")
            ],
            "churn": [
                {
                    "month": int(r["month"]),
                    "scenario": str(r["scenario"]),
                    "churn": float(r["churn"]),
                    "revenue": float(r["revenue"]),
                }
                for r in cf.metrics.to_dict("records")
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"plan shares, shift {shift}")
    for c in ("month", "action", "baseline", "counterfactual", "difference"):
        t.add_column(c, justify="right")
    for r in table.itertuples():
        t.add_row(
            str(r.month),
            str(r.action),
            f"{r.baseline:.4f}",
            f"{r.counterfactual:.4f}",
            f"{r.difference:+.4f}",
        )
    Console().print(t)


def _parse_groups(text: str) -> tuple[int, ...]:
    try:
        groups = tuple(int(g) for g in text.split(",") if g.strip())
    except ValueError:
        _fail(f"--groups {text!r} must be comma-separated integers in 1..8.")
    return groups


@app.command("rust")
def rust(
    groups: str = typer.Option("1,2,3,4", "--groups", help="Comma-separated bus groups (1-8)."),
    bins: int = typer.Option(175, "--bins", help="175 (Rust's cells) or 90 (5,000 miles)."),
    beta: float = typer.Option(0.9999, "--beta", help="Discount factor in [0, 1)."),
    data: Path | None = typer.Option(
        None, "--data", help="rust_bus_long.csv or its directory (default: ../shared/...)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """NFXP estimates of Rust's (1987) bus-engine model: RC, theta11, theta3, s.e., LL."""
    from memberlab.choice import fit_rust, load_rust_bus, rust_states

    g = _parse_groups(groups)
    with _user_errors():
        frame = load_rust_bus(data)
        d = rust_states(frame, groups=g, bins=bins)
        with _spinner("estimating by NFXP"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit_rust(d, discount=beta)
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2, default=_clean))
    else:
        typer.echo(res.summary())
