"""``memberlab choice compare``: rank benefit and price scenarios against the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["compare_cmd", "register"]


def _parse_scenarios(items: list[str]) -> dict[str, str]:
    from memberlab.cli.choice import _fail

    out: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or not name or not spec.strip():
            _fail(
                f"--scenario {item!r} must look like NAME=SPEC, e.g. "
                "'video=--reward-shift monthly=0.3'."
            )
        if name in out:
            _fail(f"--scenario name {name!r} is given twice.")
        out[name] = spec
    return out


def compare_cmd(
    directory: Path = typer.Argument(..., help="Directory written by 'memberlab choice fit'."),
    scenario: list[str] = typer.Option(
        ...,
        "--scenario",
        help="NAME=SPEC, SPEC the options of 'choice counterfactual', e.g. "
        "'video=--reward-shift monthly=0.3' or 'dearer=--price-change monthly=1.2' "
        "(repeatable).",
    ),
    price: list[str] = typer.Option(
        [],
        "--price",
        help="ACTION=COLUMN|AMOUNT: what a member pays for the action, as for 'choice "
        "counterfactual' (repeatable; default: each plan's price_<plan> state column).",
    ),
    months: int = typer.Option(12, "--months", min=1, help="Months to simulate."),
    members: int = typer.Option(10_000, "--members", min=2, help="Simulated members."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    alpha: float = typer.Option(0.05, "--alpha", help="Intervals at level 1 - alpha."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of the comparison."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Rank scenarios by revenue per member and by retention, with intervals vs baseline.

    Intervals come from the bootstrap replicates ``choice fit --bootstrap B`` wrote to
    DIRECTORY when there are any (the same members and random numbers in each), else
    from a bootstrap over the simulated members."""
    from memberlab.choice import ChoiceResults
    from memberlab.cli.choice import _fail, _spinner, _user_errors
    from memberlab.value import compare_scenarios, load_replicates, value_prices

    if not 0 < alpha < 1:
        _fail(f"--alpha {alpha}: must be in (0, 1).")
    specs = _parse_scenarios(scenario)
    with _user_errors():
        res = ChoiceResults.load(directory)
        prices = value_prices(res, price)  # parsed as 'choice counterfactual' parses them
        reps = load_replicates(directory)
        with _spinner(f"simulating {len(specs) + 1} scenarios x {members:,} members"):
            cmp = compare_scenarios(
                res, specs, prices=prices, months=months, n_members=members,
                replicates=reps, alpha=alpha, rng=seed,
            )  # fmt: skip
        if plot is not None:
            cmp.plot(plot)
    if as_json:
        payload = cmp.to_dict()
        payload["seed"] = seed
        payload["interval_source"] = "replicates" if reps else "members"
        payload["ranking"] = {
            "revenue": cmp.ranking("revenue"),
            "retention": cmp.ranking("retention"),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    lvl = round(100 * (1 - alpha))
    source = f"{len(reps)} bootstrap replicates" if reps else "bootstrap over members"
    t = Table(
        title=f"scenarios vs baseline: {members:,} members, {months} months, seed {seed}; "
        f"intervals from {source}"
    )
    for c in (
        "scenario",
        "revenue/member",
        f"vs baseline [{lvl}%]",
        "rank",
        "retention",
        f"vs baseline [{lvl}%]",
        "rank",
    ):
        t.add_column(c, justify="right")
    for r in cmp.table.sort_values("rank_revenue").itertuples():
        t.add_row(
            str(r.scenario),
            f"{r.revenue:.3f}",
            f"{r.revenue_diff:+.3f} [{r.revenue_diff_lower:+.3f}, {r.revenue_diff_upper:+.3f}]",
            str(r.rank_revenue),
            f"{r.retention:.4f}",
            f"{r.retention_diff:+.4f} [{r.retention_diff_lower:+.4f}, "
            f"{r.retention_diff_upper:+.4f}]",
            str(r.rank_retention),
        )
    Console().print(t)
    if plot is not None:
        typer.echo(f"wrote {plot}")


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the ``choice`` command group."""
    app.command("compare")(compare_cmd)
