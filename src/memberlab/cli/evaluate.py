"""``memberlab evaluate``: off-policy evaluation on the Open Bandit Dataset or exported logs."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import typer

from memberlab.cli import _jobs
from memberlab.cli._common import DB_HELP as _DB_HELP
from memberlab.cli._common import user_errors as _user_errors

app = typer.Typer(
    help="Off-policy evaluation: Open Bandit Dataset files or `memberlab logs export` output.",
    no_args_is_help=True,
)


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _table(report: dict[str, Any]) -> str:
    from memberlab.evaluation.ope import MIN_EFFECTIVE

    head = (
        f"{'estimator':<10} {'value':>10} {'se':>9} {'lower':>10} {'upper':>10} "
        f"{'ess':>9} {'ess var':>8} {'max w':>8}"
    )
    lines = [head]
    flagged = False
    for e in report["estimates"]:
        ess_var = e.get("ess_variance")
        lines.append(
            f"{e['estimator']:<10} {e['value']:>10.5f} {e['se']:>9.5f} {e['lower']:>10.5f} "
            f"{e['upper']:>10.5f} {e['ess']:>9.1f} "
            f"{ess_var if ess_var is not None else float('nan'):>8.1f} {e['max_weight']:>8.2f}"
            + (f"  ! {e['warning']}" if e.get("warning") else "")
        )
        flagged = flagged or bool(e.get("warning"))
    lines.append(f"n = {report['n']}, on-policy (mean logged reward) = {report['on_policy']:.5f}")
    if flagged:
        lines.append(
            f"! untrustworthy: ess or ess var (the effective decisions the variance rests on) "
            f"under {MIN_EFFECTIVE:.0f}; see docs/evaluation.md, 'Weight diagnostics'."
        )
    return "\n".join(lines)


_INTERVAL_HELP = (
    "normal, bootstrap (percentile) or studentized (bootstrap-t, better with skewed "
    "weights); default bootstrap with --bootstrap, else normal."
)


def _interval(interval: str | None, bootstrap: int) -> str:
    from memberlab.cli._common import fail
    from memberlab.evaluation.ope import INTERVALS

    if interval is None:
        return "bootstrap" if bootstrap > 0 else "normal"
    if interval not in INTERVALS:
        fail(f"--interval {interval!r}: must be one of {', '.join(INTERVALS)}.")
    if interval != "normal" and bootstrap < 2:
        fail(f"--interval {interval} needs --bootstrap B (resamples, at least 2).")
    return interval


def _run(
    data: Any,
    policy: Any,
    estimators: str,
    bootstrap: int,
    seed: int,
    level: float,
    clip: float | None,
    by_position: bool,
    interval: str,
) -> dict[str, Any]:
    from memberlab.evaluation import UntrustworthyEstimateWarning, evaluate

    names = [e for e in estimators.split(",") if e.strip()]
    with warnings.catch_warnings():
        # the table and the JSON carry each estimate's warning
        warnings.simplefilter("ignore", UntrustworthyEstimateWarning)
        rep = evaluate(
            data, policy, estimators=names, level=level, clip=clip, interval=interval,
            n_bootstrap=max(bootstrap, 2), rng=seed, by_position=by_position,
        )  # fmt: skip
    return rep.to_dict()


@app.command("obd")
def obd(
    path: Path = typer.Argument(..., help="The obd folder (or the obp wheel)."),
    behavior: str = typer.Option("random", help="Logging policy: random or bts."),
    campaign: str = typer.Option("all", help="all, men or women."),
    policy: str = typer.Option("uniform", help="Target policy: uniform, logged or fixed:ITEM."),
    estimators: str = typer.Option("ipw,snipw,dm,dr", help="Comma-separated obp names."),
    bootstrap: int = typer.Option(0, min=0, help="Bootstrap resamples (0 = normal interval)."),
    interval: str | None = typer.Option(None, help=_INTERVAL_HELP),
    seed: int = typer.Option(0, help="Seed of the reward-model folds and the bootstrap."),
    level: float = typer.Option(0.95, help="Interval level."),
    clip: float | None = typer.Option(None, help="Cap on the importance weights."),
    by_position: bool = typer.Option(False, help="Also estimate each position separately."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Evaluate a target policy on Open Bandit Dataset logs."""
    from memberlab.evaluation import load_obd
    from memberlab.evaluation.policies import policy_from_name

    how = _interval(interval, bootstrap)
    with _user_errors():
        data = load_obd(path, behavior=behavior, campaign=campaign)
        out = _run(data, policy_from_name(policy), estimators, bootstrap, seed, level, clip,
                   by_position, how)  # fmt: skip
    _emit(out, as_json)


def _emit(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_clean(out), indent=2))
    elif "candidates" in out:
        for c in out["candidates"]:
            typer.echo(f"== {c['name']}")
            typer.echo(_table(c))
        typer.echo(f"best: {out['best']['name']}")
    else:
        typer.echo(_table(out))


def _record(out: dict[str, Any], kind: str, label: str, database_url: str | None) -> None:
    """Write ``out`` to the database's ``evaluations`` table (shown on the dashboard)."""
    import os

    from memberlab.store import Store

    store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"))
    try:
        seq = store.record_evaluation(kind, label, _clean(out))
    finally:
        store.close()
    typer.echo(f"recorded as evaluation {seq} ({kind}: {label})", err=True)


@app.command("logs")
def logs(
    file: Path | None = typer.Argument(
        None,
        help="A `memberlab logs export` Parquet file; without it the logs are exported "
        "from the database (--database-url, --kind, --space, --since, --until) first.",
    ),
    policy: str = typer.Option(
        "uniform", help="uniform, logged, fixed:ITEM, a recommender snapshot file or settings.json."
    ),
    candidates: Path | None = typer.Option(None, help="Settings JSON: candidates or a grid."),
    estimators: str = typer.Option("ipw,snipw,dr", help="Comma-separated obp names."),
    bootstrap: int = typer.Option(0, min=0, help="Bootstrap resamples (0 = normal interval)."),
    interval: str | None = typer.Option(None, help=_INTERVAL_HELP),
    seed: int = typer.Option(0, help="Seed of the Monte Carlo, the folds and the bootstrap."),
    level: float = typer.Option(0.95, help="Interval level."),
    clip: float | None = typer.Option(None, help="Cap on the importance weights."),
    draws: int = typer.Option(200, min=1, help="Monte Carlo draws per context (snapshots)."),
    train_fraction: float = typer.Option(0.5, help="Share of the logs candidates refit on."),
    select_by: str = typer.Option("snipw", help="Estimator that picks the best candidate."),
    importance: bool = typer.Option(False, help="Feature-group importance (leave one out)."),
    reward: str = typer.Option(
        "click",
        help="click (the logged reward), or value: the member value of the plan each "
        "impression converted to (an export of --kind value; needs --choice-model).",
    ),
    choice_model: Path | None = typer.Option(
        None, help="With --reward value: the directory written by 'memberlab choice fit'."
    ),
    value_horizon: int = typer.Option(24, min=1, help="With --reward value: months of revenue."),
    price: list[str] = typer.Option(
        [],
        "--price",
        help="With --reward value: ACTION=COLUMN|AMOUNT, as for 'memberlab serve' "
        "(default: each plan's price_<plan> state column).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    executor: str = _jobs.executor_option(),
    workers: int | None = _jobs.workers_option(),
    ray_address: str | None = _jobs.ray_address_option(),
    record: bool = typer.Option(
        False,
        help="Also store the JSON result in the database's evaluations table "
        "(GET /v1/admin/evaluations, the dashboard).",
    ),
    label: str | None = typer.Option(None, help="Label of the recorded evaluation."),
    database_url: str | None = typer.Option(None, help=_DB_HELP),
    kind: str = typer.Option("callouts", help="Without FILE: the kind of logs to export."),
    space: str | None = typer.Option(None, help="Without FILE: only this layout space."),
    since: str | None = typer.Option(None, help="Without FILE: decisions at or after (ISO)."),
    until: str | None = typer.Option(None, help="Without FILE: decisions before (ISO)."),
) -> None:
    """Evaluate a policy, or compare candidate settings, on exported service logs.

    Candidates are refitted and evaluated one task each on ``--executor`` (same numbers on
    every backend). ``--record`` stores the result in the database."""
    import tempfile

    from memberlab.cli._common import fail
    from memberlab.evaluation import BanditDataset, RecommenderPolicy
    from memberlab.evaluation.candidates import compare_candidates, expand_grid, feature_importance
    from memberlab.evaluation.policies import policy_from_name

    if reward not in ("click", "value"):
        fail(f"--reward {reward!r}: must be 'click' or 'value'.")
    if reward == "value" and choice_model is None:
        fail("--reward value needs --choice-model DIR, DIR written by 'memberlab choice fit'.")
    how = _interval(interval, bootstrap)
    with _user_errors(), tempfile.TemporaryDirectory() as tmp:
        source = file.name if file is not None else f"{kind} logs in the database"
        if file is None:
            file = _export(Path(tmp) / "logs.parquet", database_url, kind, space, since, until)
        values = None
        if reward == "value":
            from memberlab.value import values_from_model

            assert choice_model is not None
            values = values_from_model(choice_model, horizon=value_horizon, prices=price)
        data = BanditDataset.from_export(file, values=values)
        settings_file = candidates
        if settings_file is None and policy.endswith(".json"):
            settings_file = Path(policy)
        if settings_file is not None:
            grid = expand_grid(json.loads(Path(settings_file).read_text()))
            names = [e for e in estimators.split(",") if e.strip()]
            kw: dict[str, Any] = {"level": level, "clip": clip}
            if how != "normal":
                kw |= {"interval": how, "n_bootstrap": bootstrap}
            ex = _jobs.make_executor(executor, workers, ray_address)
            with ex, _jobs.progress_bar(f"candidates on {ex.name}") as progress:
                results, best = compare_candidates(
                    data, grid, train_fraction=train_fraction, estimators=names,
                    n_draws=draws, select_by=select_by, rng=seed, executor=ex,
                    progress=progress, **kw,
                )  # fmt: skip
            out: dict[str, Any] = {
                "candidates": [r.to_dict() for r in results],
                "best": {"name": best.name, "settings": best.settings},
                "select_by": select_by,
                "train_fraction": train_fraction,
            }
            if importance:
                out["importance"] = feature_importance(
                    data, settings=best.settings, train_fraction=train_fraction, rng=seed
                )
        else:
            if Path(policy).is_file():
                from memberlab.callouts import CalloutRecommender
                from memberlab.policy._codec import snapshot_kind
                from memberlab.value import ValueRecommender

                blob = Path(policy).read_bytes()
                cls: Any = (
                    ValueRecommender if snapshot_kind(blob) == "value" else CalloutRecommender
                )
                target: Any = RecommenderPolicy(
                    cls.from_bytes(blob), n_draws=draws, rng=seed, name=policy
                )
            else:
                target = policy_from_name(policy)
            out = _run(data, target, estimators, bootstrap, seed, level, clip, False, how)
        out["reward"] = reward
        if record:
            what = "candidates" if "candidates" in out else "ope"
            name = Path(settings_file).name if settings_file is not None else policy
            _record(out, what, label or f"{source}: {name}", database_url)
    _emit(out, as_json)


def _export(
    out: Path,
    database_url: str | None,
    kind: str,
    space: str | None,
    since: str | None,
    until: str | None,
) -> Path:
    """Export the database's logs to ``out`` (as ``memberlab logs export`` does)."""
    import os

    from memberlab.store import Store
    from memberlab.store._export import export_parquet, parse_time

    store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"), migrate=False)
    try:
        export_parquet(
            store, out, kind=kind, space=space,
            since=parse_time(since, "--since"), until=parse_time(until, "--until"),
        )  # fmt: skip
    finally:
        store.close()
    return out
