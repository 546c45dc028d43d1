"""``memberlab jobs``: offline jobs on serial, local processes or Ray.

Every command takes ``--executor serial|processes|ray [--workers N] [--ray-address
ADDR]`` and gives the same numbers on each. The bootstrap of a choice model is
``memberlab choice fit ... --bootstrap B``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memberlab.cli import _jobs
from memberlab.cli.choice import _clean, _user_errors

app = typer.Typer(
    help="Offline jobs (counterfactuals, OPE, scoring, prior refits) on serial, processes or Ray.",
    no_args_is_help=True,
)


def _write_or_print(frame: object, out: Path | None, as_json: bool) -> None:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
        typer.echo(f"wrote {out}")
    if as_json:
        typer.echo(json.dumps(frame.to_dict("records"), indent=2, default=_clean))
    elif out is None:
        typer.echo(frame.to_string(index=False))


@app.command("counterfactual")
def counterfactual_cmd(
    directory: Path = typer.Argument(..., help="Directory written by 'memberlab choice fit'."),
    reward_shift: list[str] = typer.Option(
        [], "--reward-shift", help="ACTION=DELTA, added to the action's reward (repeatable)."
    ),
    months: int = typer.Option(12, "--months", min=1, help="Months to simulate."),
    members: int = typer.Option(100_000, "--members", min=1, help="Simulated members."),
    shard_size: int = typer.Option(10_000, "--shard-size", min=1, help="Members per task."),
    seed: int = typer.Option(0, "--seed", help="Seed of the job."),
    out: Path | None = typer.Option(None, "--out", help="Write the shares (.csv or .parquet)."),
    as_json: bool = typer.Option(False, "--json", help="Print the shares as JSON."),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
) -> None:
    """Plan shares, revenue and churn for many members, sharded by member."""
    from memberlab.choice import ChoiceResults, parse_changes
    from memberlab.jobs import simulate_counterfactual

    job = _jobs.Job("counterfactual", executor, workers, ray_address)
    with _user_errors():
        res = ChoiceResults.load(directory)
        shift = parse_changes(res, shift=reward_shift).shift
        cf = job.run(
            lambda ex, progress: simulate_counterfactual(
                res,
                shift,
                n_members=members,
                months=months,
                shard_size=shard_size,
                rng=seed,
                executor=ex,
                progress=progress,
            )
        )
    _write_or_print(cf.shares, out, as_json)


@app.command("member-value")
def member_value_cmd(
    directory: Path = typer.Argument(..., help="Directory written by 'memberlab choice fit'."),
    price: list[str] = typer.Option(
        [], "--price", help="ACTION=COLUMN or ACTION=AMOUNT paid for the action (repeatable)."
    ),
    horizon: int = typer.Option(24, "--horizon", min=1, help="Months of revenue counted."),
    members: int = typer.Option(
        100_000, "--members", min=1, help="Simulated members per state and plan."
    ),
    shard_size: int = typer.Option(10_000, "--shard-size", min=1, help="Members per task."),
    seed: int = typer.Option(0, "--seed", help="Seed of the job."),
    out: Path | None = typer.Option(None, "--out", help="Write the values (.csv or .parquet)."),
    as_json: bool = typer.Option(False, "--json", help="Print the values as JSON."),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
) -> None:
    """Member value of each plan in each state by simulation, sharded by member."""
    from memberlab.choice import ChoiceResults, parse_changes
    from memberlab.jobs import simulate_member_values

    job = _jobs.Job("member value", executor, workers, ray_address)
    with _user_errors():
        res = ChoiceResults.load(directory)
        prices = parse_changes(res, price=price).prices
        if not prices:
            raise ValueError("--price is required: what a member pays for each plan.")
        mv = job.run(
            lambda ex, progress: simulate_member_values(
                res,
                prices=prices,
                horizon=horizon,
                n_members=members,
                shard_size=shard_size,
                rng=seed,
                executor=ex,
                progress=progress,
            )
        )
    _write_or_print(mv.frame(), out, as_json)


@app.command("ope")
def ope_cmd(
    paths: list[Path] = typer.Argument(..., help="Parquet log files or directories of them."),
    reward: str = typer.Option("reward", "--reward", help="Reward column."),
    propensity: str = typer.Option("propensity", "--propensity", help="Logged propensity."),
    target: str = typer.Option(
        "target_propensity", "--target", help="Target policy's probability of the logged action."
    ),
    reward_hat: str | None = typer.Option(
        None, "--reward-hat", help="Reward model at the logged action (DR)."
    ),
    value_hat: str | None = typer.Option(
        None, "--value-hat", help="Reward model's value of the target policy (DM, DR)."
    ),
    clip: float | None = typer.Option(None, "--clip", help="Cap on importance weights."),
    n_boot: int = typer.Option(200, "--n-boot", min=1, help="Bootstrap replicates."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    out: Path | None = typer.Option(None, "--out", help="Write the table (.csv or .parquet)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
) -> None:
    """Off-policy estimates with Poisson-bootstrap intervals, one task per Parquet file."""
    from memberlab.jobs import ope_bootstrap

    job = _jobs.Job("OPE", executor, workers, ray_address)
    with _user_errors():
        table = job.run(
            lambda ex, progress: ope_bootstrap(
                [str(p) for p in paths],
                reward=reward,
                logged_propensity=propensity,
                target_propensity=target,
                logged_reward_hat=reward_hat,
                target_value_hat=value_hat,
                clip=clip,
                n_boot=n_boot,
                rng=seed,
                executor=ex,
                progress=progress,
            )
        )
    _write_or_print(table, out, as_json)


@app.command("score")
def score_cmd(
    snapshot: Path = typer.Argument(..., help="Callout recommender snapshot (save/to_bytes)."),
    members: list[Path] = typer.Argument(..., help="Parquet member tables (or directories)."),
    out: Path = typer.Option(..., "--out", help="Output directory of Parquet parts."),
    id_column: str = typer.Option("member_id", "--id-column", help="Member id column."),
    context: str = typer.Option(
        "", "--context", help="Comma-separated context columns (default: all but the id)."
    ),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Keep each member's top k."),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
) -> None:
    """Posterior click rate of every callout for every member: Parquet in, Parquet out."""
    from memberlab.callouts import CalloutRecommender
    from memberlab.jobs import score_members

    cols = [c.strip() for c in context.split(",") if c.strip()] or None
    job = _jobs.Job("scoring", executor, workers, ray_address)
    with _user_errors():
        rec = CalloutRecommender.load(snapshot)
        done = job.run(
            lambda ex, progress: score_members(
                rec,
                [str(m) for m in members],
                out,
                id_column=id_column,
                context_columns=cols,
                top_k=top_k,
                executor=ex,
                progress=progress,
            )
        )
    typer.echo(f"wrote {int(done['rows'].sum()):,} rows in {len(done)} files to {out}")


@app.command("refit-priors")
def refit_cmd(
    snapshot: Path = typer.Argument(..., help="Callout recommender snapshot (save/to_bytes)."),
    shards: list[Path] = typer.Argument(
        ..., help="Parquet feedback logs (context JSON, item_id, reward), one task each."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory: priors.json, posterior."),
    min_weights: int = typer.Option(3, "--min-weights", min=1, help="Weights a group needs."),
    replay: bool = typer.Option(True, "--replay/--no-replay", help="Hindsight replay."),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
) -> None:
    """Empirical-Bayes group priors from sharded logs, then the hindsight replay."""
    import pandas as pd

    from memberlab.callouts import CalloutRecommender
    from memberlab.jobs import refit_priors_sharded

    job = _jobs.Job("prior refit", executor, workers, ray_address)
    with _user_errors():
        rec = CalloutRecommender.load(snapshot)
        res = job.run(
            lambda ex, progress: refit_priors_sharded(
                rec,
                [str(s) for s in shards],
                min_weights=min_weights,
                replay=replay,
                executor=ex,
                progress=progress,
            )
        )
        out.mkdir(parents=True, exist_ok=True)
        priors = {g: {"mean": p.mean, "var": p.var} for g, p in res.priors.items()}
        (out / "priors.json").write_text(
            json.dumps({"n_rows": res.n_rows, "n_shards": res.n_shards, "priors": priors}, indent=2)
        )
        if res.posterior is not None:
            keys = res.features.keys()
            pd.DataFrame(
                {
                    "group": [g for g, _ in keys],
                    "value": [v for _, v in keys],
                    "mean": res.posterior.mean,
                    "var": res.posterior.var,
                    "prior_mean": res.posterior.prior_mean,
                    "prior_var": res.posterior.prior_var,
                }
            ).to_parquet(out / "posterior.parquet", index=False)
    typer.echo(res.fit.summary())
    typer.echo(f"wrote {out}/priors.json" + (", posterior.parquet" if replay else ""))
