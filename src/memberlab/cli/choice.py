"""``memberlab choice``: fit dynamic discrete choice models and simulate counterfactuals."""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from memberlab.cli import _jobs
from memberlab.cli._common import fail as _fail
from memberlab.cli._common import user_errors as _user_errors

app = typer.Typer(
    help="Membership choice: fit PQR, CCP or NFXP; counterfactuals; Rust's bus data.",
    no_args_is_help=True,
)

_ESTIMATORS = ("pqr", "pqr-tabular", "pqr-fa", "ccp", "nfxp")


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show library warnings as ``warning: ...`` lines on stderr (no file paths)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                msg = str(w.message)
                if msg not in seen:
                    seen.add(msg)
                    typer.echo(f"warning: {msg}", err=True)


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


_PROGRESS_AFTER = 5.0  # seconds of quiet before progress lines appear


class _Progress(logging.Handler):
    """Progress of a long fit on stderr, from the library's log records.

    Nothing is shown for the first few seconds; after that at most one line every two
    seconds (``progress [12 s]: BHHH iter 5 ...``), so short fits stay quiet.
    """

    def __init__(self, *, after: float, every: float = 2.0) -> None:
        super().__init__(level=logging.DEBUG)
        self.t0 = time.perf_counter()
        self.after, self.every = after, every
        self.last = -math.inf

    def emit(self, record: logging.LogRecord) -> None:
        now = time.perf_counter() - self.t0
        if now >= self.after and now - self.last >= self.every:
            self.last = now
            typer.echo(f"progress [{now:,.0f} s]: {record.getMessage()}", err=True)

    def stage(self, text: str) -> None:
        """A stage of the fit: shown whenever progress is on (not throttled)."""
        now = time.perf_counter() - self.t0
        if now >= self.after:
            self.last = now
            typer.echo(f"progress [{now:,.0f} s]: {text}", err=True)


@contextmanager
def _progress() -> Iterator[_Progress]:
    handler = _Progress(after=_PROGRESS_AFTER)
    lg = logging.getLogger("memberlab.choice")
    old = lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        lg.removeHandler(handler)
        lg.setLevel(old)


def _parse_bins(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        col, sep, n = item.partition("=")
        if not sep or not col.strip():
            _fail(f"--bins {item!r} must look like COLUMN=N (e.g. spend=5).")
        try:
            k = int(n)
        except ValueError:
            _fail(f"--bins {item!r}: N {n!r} is not an integer.")
        if col.strip() in out:
            _fail(f"--bins: column {col.strip()!r} is given twice.")
        out[col.strip()] = k
    return out


@app.command("fit")
def fit(
    panel: Path = typer.Argument(..., help="Panel file, CSV or Parquet."),
    id_col: str = typer.Option(..., "--id", help="Member id column."),
    time_col: str = typer.Option(
        ..., "--time", help="Period column: consecutive integers or months such as 2024-01."
    ),
    state: str = typer.Option(..., "--state", help="Comma-separated state columns."),
    action: str = typer.Option(..., "--action", help="Action column."),
    anchor: str = typer.Option(..., "--anchor", help="Anchor action (reward fixed at 0)."),
    discount: float = typer.Option(..., "--discount", help="Discount factor in [0, 1)."),
    estimator: str = typer.Option(
        "pqr", "--estimator", help="pqr, pqr-tabular, pqr-fa, ccp or nfxp."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    feasible: str = typer.Option(
        "", "--feasible", help="Column of '|'-separated feasible actions per row (optional)."
    ),
    actions: str = typer.Option(
        "",
        "--actions",
        help="Comma-separated allowed actions, e.g. none,monthly,annual (others are errors).",
    ),
    bins: list[str] = typer.Option(
        [],
        "--bins",
        help="COLUMN=N: cut a numeric state column into N quantile bins (repeatable); "
        "recorded in the results and applied to new data.",
    ),
    smoothing: float | None = typer.Option(
        None,
        "--smoothing",
        help="Pseudo-count per feasible action in the policy (pqr, ccp) [default: the library's].",
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
    Defaults are the library's: the same data give the same model in Python.
    """
    from memberlab.choice import CCP, NFXP, PQR, Panel, StructuralPQR, TabularPQR, read_panel

    if estimator not in _ESTIMATORS:
        _fail(f"estimator == {estimator!r}, must be one of {', '.join(_ESTIMATORS)}.")
    bin_spec = _parse_bins(bins)
    allowed = [a.strip() for a in actions.split(",") if a.strip()] or None
    if allowed is not None and len(set(allowed)) != len(allowed):
        _fail(f"--actions {actions!r} names an action twice.")
    if allowed is not None and anchor not in allowed:
        _fail(f"--anchor {anchor!r} is not among --actions {allowed}.")
    with _user_errors(), _progress() as prog, _warnings_to_stderr():
        frame = read_panel(panel)
        cols = [c.strip() for c in state.split(",") if c.strip()]
        prog.stage(f"read {len(frame):,} rows")
        with _spinner("validating the panel"):
            p = Panel.from_frame(
                frame,
                id=id_col,
                time=time_col,
                state=cols,
                action=action,
                actions=allowed,
                feasible=feasible or None,
                bins=bin_spec or None,
                continuous=cols if estimator == "pqr-fa" else (),
            )
        prog.stage(f"panel: {p.n_obs:,} decisions on {p.n_states:,} states")
        smooth: dict[str, Any] = {} if smoothing is None else {"smoothing": smoothing}
        est: Any
        if estimator == "pqr":
            est = StructuralPQR(anchor=anchor, discount=discount, **smooth)
        elif estimator == "pqr-tabular":
            est = TabularPQR(anchor=anchor, discount=discount, **smooth)
        elif estimator == "pqr-fa":
            est = PQR(anchor=anchor, discount=discount, rng=seed)
        elif estimator == "ccp":
            est = CCP(anchor=anchor, discount=discount, **smooth)
        else:
            est = NFXP(anchor=anchor, discount=discount)
        with _spinner(f"fitting {estimator} on {p.n_obs:,} decisions"):
            res = est.fit(p)
        prog.stage(f"fitted {estimator}")
        res.check_trust()
        res.info["panel"] = str(panel)
        res.info["id_col"] = id_col
        res.info["time_col"] = time_col
        res.info["action_col"] = action
        res.info["bins"] = dict(p.bins)
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


@app.command("counterfactual")
def counterfactual_cmd(
    directory: Path = typer.Argument(..., help="Directory written by 'memberlab choice fit'."),
    reward_shift: list[str] = typer.Option(
        [], "--reward-shift", help="ACTION=DELTA, added to the action's reward (repeatable)."
    ),
    price: list[str] = typer.Option(
        [],
        "--price",
        help="ACTION=COLUMN or ACTION=AMOUNT: what a member pays for the action, a state "
        "column of the fitted model or a fixed amount (repeatable); gives revenue.",
    ),
    price_change: list[str] = typer.Option(
        [],
        "--price-change",
        help="ACTION=FACTOR: the action's price (a --price state column) times FACTOR; "
        "utility through the price coefficient, revenue at the new price (repeatable).",
    ),
    months: int | None = typer.Option(
        None, "--months", min=1, help="Months to simulate [default: the library's, 12]."
    ),
    members: int | None = typer.Option(
        None, "--members", min=1, help="Simulated members [default: the library's, 10,000]."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of shares and revenue."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Simulate members from the panel's first-period states: baseline against changed
    rewards or prices (plan shares, churn and revenue by month, 95% intervals)."""
    from memberlab.choice import (
        DEFAULT_MEMBERS,
        DEFAULT_MONTHS,
        ChoiceResults,
        counterfactual,
        parse_changes,
    )

    months = DEFAULT_MONTHS if months is None else months
    members = DEFAULT_MEMBERS if members is None else members
    with _user_errors():
        res = ChoiceResults.load(directory)
        ch = parse_changes(res, shift=reward_shift, price=price, price_change=price_change)
        with (
            _spinner(f"simulating {members:,} members for {months} months"),
            _warnings_to_stderr(),
        ):
            cf = counterfactual(
                res,
                ch.shift,
                prices=ch.prices or None,
                price_change=ch.price_change or None,
                months=months,
                n_members=members,
                rng=seed,
            )
        if plot is not None:
            cf.plot(plot)
    if as_json:
        payload = cf.to_dict()
        payload["query"].update(
            {"reward_shift": ch.shift, "price": ch.prices, "price_change": ch.price_change}
        )
        payload["query"]["seed"] = seed
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for c in cf.info["price_changes"]:
        console.print(
            f"price change: {c['action']} price ({c['price']}) x {c['factor']:g}, "
            f"price coefficient {c['price_coef']:.4f}"
        )
    t = Table(title=f"plan shares (reward shift {ch.shift or 'none'})")
    for c in ("month", "action", "baseline", "counterfactual", "difference", "95% interval"):
        t.add_column(c, justify="right")
    for r in cf.shares.itertuples():
        t.add_row(
            str(r.month),
            str(r.action),
            f"{r.baseline:.4f}",
            f"{r.counterfactual:.4f}",
            f"{r.difference:+.4f}",
            f"[{r.difference_lower:+.4f}, {r.difference_upper:+.4f}]",
        )
    console.print(t)
    m = Table(title="churn and revenue per member")
    for c in ("month", "churn base", "churn cf", "revenue base", "revenue cf"):
        m.add_column(c, justify="right")
    has_prices = bool(ch.prices)
    for r in cf.months_frame().itertuples():
        m.add_row(
            str(r.month),
            f"{r.churn_baseline:.4f}",
            f"{r.churn_counterfactual:.4f}",
            f"{r.revenue_baseline:.4f}" if has_prices else "-",
            f"{r.revenue_counterfactual:.4f}" if has_prices else "-",
        )
    console.print(m)
    if plot is not None:
        console.print(f"wrote {plot}")


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


from memberlab.cli._choice_compare import register as _register_compare  # noqa: E402

_register_compare(app)
