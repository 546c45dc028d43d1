"""Service commands: ``memberlab serve``, ``memberlab keys``, ``memberlab demo``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from memberlab.cli._common import DB_HELP as _DB_HELP
from memberlab.cli._common import fail, user_errors

keys_app = typer.Typer(help="API keys (stored hashed; printed once).", no_args_is_help=True)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to bind."),
    database_url: str | None = typer.Option(None, help=_DB_HELP),
    attribution_window: float | None = typer.Option(
        None, help="Seconds a click may follow its impression (default 3600)."
    ),
    workers: int = typer.Option(1, min=1, help="Server processes sharing one state."),
    train_interval: float | None = typer.Option(
        None, help="Seconds between trainer steps (default 2; 0 = only on POST /v1/admin/train)."
    ),
    propensity_draws: int | None = typer.Option(None, help="Posterior draws per propensity."),
    exploration: float | None = typer.Option(
        None,
        help="Exploration scale of a new policy: Thompson draws use the posterior s.d. "
        "times this (default 1; 0 = greedy on the posterior mean).",
    ),
    crosses: str | None = typer.Option(
        None, help="Context x attribute crosses of a new policy, e.g. 'page:benefit,member:brand'."
    ),
    choice_model: Path | None = typer.Option(
        None,
        help="Directory written by 'memberlab choice fit': serves GET "
        "/v1/choice/counterfactual and the dashboard's membership counterfactuals.",
    ),
    holdout_fraction: float | None = typer.Option(
        None,
        help="Share of units (a decision's unit_id) held out of the policy and served by "
        "the baseline, in [0, 1); default 0: no experiment. Readout: GET /v1/admin/experiment.",
    ),
    holdout_policy: str | None = typer.Option(
        None, help="The holdout's baseline: uniform (default) or first (the first candidate)."
    ),
    experiment_salt: str | None = typer.Option(
        None,
        help="Salt of the sticky assignment (default: the one kept in the database, made "
        "once); changing it re-assigns every unit.",
    ),
    objective: str | None = typer.Option(
        None,
        help="What callout decisions optimise: 'clicks', or 'value' (expected member value "
        "of the conversions they bring; needs --choice-model). Default: "
        "MEMBERLAB_OBJECTIVE, else clicks.",
    ),
    value_horizon: int | None = typer.Option(
        None, min=1, help="Months of revenue in the member value (--objective value; default 24)."
    ),
    price: list[str] = typer.Option(
        [],
        "--price",
        help="ACTION=COLUMN|AMOUNT: what a member pays for a plan, as for 'choice "
        "counterfactual' (--objective value; repeatable; default: each plan's price_<plan> "
        "state column).",
    ),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Run the decision service (uvicorn; several worker processes with --workers)."""
    from memberlab.service._checks import check_crosses
    from memberlab.service.settings import Settings
    from memberlab.store import Store, display_url, normalize_url

    model_dir = choice_model or os.environ.get("MEMBERLAB_CHOICE_MODEL") or None
    objective = objective or os.environ.get("MEMBERLAB_OBJECTIVE") or "clicks"
    if objective not in ("clicks", "value"):
        fail(f"--objective {objective!r}: must be 'clicks' or 'value'.")
    if objective == "value" and model_dir is None:
        fail("--objective value needs --choice-model DIR, DIR written by 'memberlab choice fit'.")
    if objective == "value":
        assert model_dir is not None
        _check_value_model(str(model_dir), value_horizon, price)
    if model_dir is not None:  # load once here, so a bad directory fails before serving
        from memberlab import MemberlabError
        from memberlab.choice import ChoiceResults

        try:
            ChoiceResults.load(model_dir)
        except (MemberlabError, OSError, ValueError, KeyError) as exc:
            raise typer.BadParameter(
                f"cannot load a choice model from {str(model_dir)!r}: {exc}",
                param_hint="--choice-model",
            ) from None
        model_dir = str(Path(model_dir).resolve())
    overrides = {
        "database_url": normalize_url(database_url or os.environ.get("MEMBERLAB_DATABASE_URL")),
        "attribution_window": attribution_window,
        "train_interval": train_interval,
        "propensity_draws": propensity_draws,
        "exploration": exploration,
        "crosses": crosses,
        "choice_model": model_dir,
        "holdout_fraction": holdout_fraction,
        "holdout_policy": holdout_policy,
        "experiment_salt": experiment_salt,
        "objective": objective if objective != "clicks" else None,
        "value_horizon": value_horizon,
        "prices": ",".join(price) or None,
    }
    settings = Settings.from_env(**overrides)  # validate once, before any worker starts
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"MEMBERLAB_{name.upper()}"] = str(value)
    store = Store(settings.database_url)  # create or migrate the schema once
    try:
        problem = check_crosses(settings.crosses, store.list_items())
        experiment = ""
        if settings.holdout_fraction > 0:  # one salt for every worker, made once
            from memberlab.service._experiment import resolve_salt

            resolve_salt(store, settings.experiment_salt)
            experiment = (
                f"; holdout {settings.holdout_fraction:g} of units ({settings.holdout_policy})"
            )
    finally:
        store.close()
    if problem:
        raise typer.BadParameter(problem, param_hint="--crosses")
    _check_bindable(host, port)
    trainer = None
    if settings.train_interval > 0:
        # The trainer gets a process of its own: HTTP workers only serve.
        import multiprocessing

        from memberlab.service._trainer import run_trainer_process

        os.environ["MEMBERLAB_BACKGROUND_TRAINER"] = "false"
        trainer = multiprocessing.get_context("spawn").Process(
            target=run_trainer_process,
            args=(settings.model_dump_json(), os.getpid()),
            name="memberlab-trainer",
            daemon=True,
        )
        trainer.start()
    typer.echo(
        f"memberlab serving on http://{host}:{port} ({workers} worker(s)); "
        f"database {display_url(settings.database_url)}{experiment}",
        err=True,
    )
    try:
        _run_uvicorn(host, port, workers, log_level)
    finally:
        if trainer is not None:
            trainer.terminate()
            trainer.join(timeout=10)


def _check_value_model(directory: str, horizon: int | None, price: list[str]) -> None:
    """Compute the member values once before serving, so a directory that is not a
    fitted choice model, a model without transitions or a bad --price fails in one line."""
    from memberlab import MemberlabError
    from memberlab.choice import ChoiceResults
    from memberlab.value import values_from_model

    try:
        ChoiceResults.load(directory)
    except (MemberlabError, OSError, ValueError, KeyError) as exc:
        fail(
            f"--choice-model {directory!r} is not a model written by 'memberlab choice fit': {exc}"
        )
    with user_errors():
        values_from_model(directory, horizon=horizon or 24, prices=price)


def _check_bindable(host: str, port: int) -> None:
    """Fail fast, before any process starts, when the address cannot be bound."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot resolve host {host!r}: {exc}", param_hint="--host"
        ) from exc
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}", param_hint="--port"
            ) from exc


def _run_uvicorn(host: str, port: int, workers: int, log_level: str) -> None:
    from memberlab.service.launch import run_uvicorn

    run_uvicorn(
        "memberlab.service.app:serve_app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


@keys_app.command("create")
def keys_create(
    scope: str = typer.Option(..., help="decide (decisions and events) or admin (everything)."),
    database_url: str | None = typer.Option(None, help=_DB_HELP),
    label: str = typer.Option("", help="A note stored with the key."),
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from memberlab.store import SCOPES, Store

    if scope not in SCOPES:
        raise typer.BadParameter(f"scope == {scope!r}, must be one of {list(SCOPES)}.")
    store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"))
    try:
        typer.echo(store.create_api_key(scope, label=label))
    finally:
        store.close()


@keys_app.command("list")
def keys_list(database_url: str | None = typer.Option(None, help=_DB_HELP)) -> None:
    """List the keys: prefix, scope, created, state and label (never the key itself)."""
    import datetime as dt

    from memberlab.store import Store, display_url

    store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"))
    try:
        rows = store.list_api_keys()
    finally:
        store.close()
    typer.echo(f"# database {display_url(store.url)}: {len(rows)} key(s)", err=True)
    for k in rows:
        created = dt.datetime.fromtimestamp(k.created_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = "revoked" if k.revoked else "active"
        typer.echo(f"{k.prefix}\t{k.scope}\t{created}\t{state}\t{k.label}")


@keys_app.command("revoke")
def keys_revoke(
    key: str = typer.Argument(..., help="The key, or the prefix 'memberlab keys list' shows."),
    database_url: str | None = typer.Option(None, help=_DB_HELP),
) -> None:
    """Revoke a key. Running servers refuse it within their key cache TTL
    (MEMBERLAB_KEY_CACHE_TTL, default 5 s) on every worker."""
    from memberlab.store import Store

    store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"))
    try:
        n = store.revoke_api_key(key)
    finally:
        store.close()
    if n == 0:
        raise typer.BadParameter(
            f"no active key {key!r} (see 'memberlab keys list').", param_hint="KEY"
        )
    typer.echo(f"revoked {n} key(s)")


def demo(
    rounds: int = typer.Option(12, min=1, help="Rounds of simulated shoppers."),
    shoppers: int = typer.Option(200, min=10, help="Shoppers per round."),
    seed: int = typer.Option(0, help="Seed of the simulated shoppers."),
    database_url: str | None = typer.Option(
        None, help="Database for the demo service (default: SQLite in a temporary folder)."
    ),
    world: str = typer.Option(
        "catalog",
        help="catalog: the sample benefit catalog with a known click model; simulator: "
        "random items and truth from memberlab.callouts.simulator.CalloutWorld.",
    ),
    plot: Path = typer.Option(
        Path("memberlab-demo.png"),
        help="Where to write the PNG (learning curve; truth "
        "against the posterior for one shopper).",
    ),
    keep_serving: bool = typer.Option(
        False, help="Leave the service up afterwards; print the dashboard URL and an admin key."
    ),
) -> None:
    """Run the service on a free port and teach it callouts from simulated shoppers."""
    from rich.console import Console
    from rich.table import Table

    from memberlab.service import demo as _demo

    if world not in ("catalog", "simulator"):
        raise typer.BadParameter(f"world == {world!r}, must be 'catalog' or 'simulator'.")

    console = Console()
    console.print(
        f"[bold]memberlab demo[/] ({world}): a real 'memberlab serve' on a free port, "
        f"{rounds} rounds x {shoppers} simulated shoppers (seed {seed}).\n"
        "Each shopper gets a callout from POST /v1/callouts/decisions; they click with a "
        "known true probability that depends on their context, after a random delay; "
        "clicks go to POST /v1/events and a trainer step (POST /v1/admin/train) closes "
        "the windows after each round. 'CTR policy' is the expected click rate of what "
        "the service served, against the best item per shopper (oracle) and a uniform "
        "random choice."
    )

    def started(base: str, url: str) -> None:
        console.print(f"service up at {base} on {url}")
        console.print(
            "round  shoppers  clicks  CTR policy  oracle  uniform  trained  version     s"
        )

    def report(r: _demo.DemoRound) -> None:
        console.print(
            f"{r.round:5d}  {r.decisions:8d}  {r.clicks:6d}  {r.ctr:10.3f}  {r.oracle_ctr:6.3f}"
            f"  {r.random_ctr:7.3f}  {r.closed:7d}  {r.policy_version:7d}  {r.seconds:4.1f}"
        )

    def hold(dashboard: str, key: str) -> None:
        try:  # a Ctrl-C while the key is being printed stops the service as one after it
            console.print(
                f"[bold]the service stays up[/]: open {dashboard} and paste the admin key\n"
                f"{key}\n(Ctrl-C stops it; the demo's database is removed then)."
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping the service.")

    summary = _demo.run(
        rounds=rounds,
        shoppers=shoppers,
        seed=seed,
        database_url=database_url,
        on_round=report,
        on_start=started,
        world=world,
        plot=plot,
        keep_serving=hold if keep_serving else None,
    )
    ctx = ", ".join(f"{k}={v}" for k, v in summary.context.items())
    table = Table(title=f"True click rate against the service's posterior, for one shopper: {ctx}")
    for col in ("item", "truth", "posterior", f"{summary.level:.0%} interval", "covers"):
        table.add_column(col, justify="right" if col != "item" else "left")
    for it in sorted(summary.rates, key=lambda x: -x["truth"]):
        inside = it["lower"] is not None and it["lower"] <= it["truth"] <= it["upper"]
        table.add_row(
            it["item_id"],
            f"{it['truth']:.3f}",
            "-" if it["mean"] is None else f"{it['mean']:.3f}",
            "-" if it["lower"] is None else f"[{it['lower']:.3f}, {it['upper']:.3f}]",
            "yes" if inside else "no",
        )
    console.print(table)
    console.print(
        f"coverage: {summary.level:.0%} intervals contain the true click rate for "
        f"{summary.coverage:.0%} of (shopper, item) pairs over {summary.n_coverage_contexts} "
        "shoppers drawn from the population (honest intervals: close to the level)."
    )
    first, last = summary.rounds[0], summary.rounds[-1]
    regret_first = first.oracle_ctr - first.ctr
    regret_last = last.oracle_ctr - last.ctr
    console.print(
        f"[bold]summary[/]: expected CTR {first.ctr:.3f} in round 1 -> {last.ctr:.3f} in round "
        f"{last.round} (oracle {last.oracle_ctr:.3f}, uniform {last.random_ctr:.3f}); "
        f"regret per shopper {regret_first:.3f} -> {regret_last:.3f}."
    )
    console.print(
        f"database counts: {summary.stats['decisions']} decisions, {summary.stats['events']} "
        f"events, {summary.stats['pending']} pending, policy version "
        f"{summary.stats['policy_version']}; {summary.seconds:.1f} s in all."
    )
    if summary.plot:
        console.print(f"plot written to {summary.plot}")


def register(app: typer.Typer) -> None:
    """Add the service commands to the root ``memberlab`` app."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.command("demo")(demo)
