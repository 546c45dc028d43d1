"""``memberlab simulate callouts``."""

from __future__ import annotations

import warnings

import typer

from memberlab.cli._simulate_progress import rounds_progress

_POLICIES = ("uniform", "epsilon", "beta", "fixed", "naive", "deconvolved", "oracle")


def register(app: typer.Typer) -> None:
    """Add the ``callouts`` command to ``memberlab simulate``."""

    @app.command("callouts")
    def callouts(
        rounds: int = typer.Option(20_000, min=100, help="Rounds (requests) per run."),
        seeds: int = typer.Option(3, min=1, help="Independent worlds (seeds 0..seeds-1)."),
        lifetime: int = typer.Option(5_000, min=1, help="Rounds each callout stays live."),
        batch: int = typer.Option(500, min=1, help="Requests per feedback batch."),
        drift: float = typer.Option(0.0, min=0.0, help="Random-walk step of true effects."),
        policies: str = typer.Option(
            ",".join(_POLICIES), help=f"Comma-separated subset of {', '.join(_POLICIES)}."
        ),
        # a str, not a Path: Path("") is Path("."), so '' could never mean "no plot"
        plot: str = typer.Option("callouts_regret.png", help="Regret-curve PNG ('' to skip)."),
    ) -> None:
        """Regret of callout policies on a cold-start world with ground truth."""
        from rich.console import Console
        from rich.table import Table

        from memberlab import ConvergenceWarning
        from memberlab.callouts.policies import (
            AttributeTSPolicy,
            BetaBernoulliPolicy,
            EpsilonGreedyPolicy,
            OraclePolicy,
            UniformPolicy,
        )
        from memberlab.callouts.simulator import CalloutWorld, SimPolicy, run_policy
        from memberlab.evaluation.regret import RegretTrace, plot_regret, summarise

        chosen = [p.strip() for p in policies.split(",") if p.strip()]
        bad = [p for p in chosen if p not in _POLICIES]
        if bad or not chosen:
            raise typer.BadParameter(
                f"policies == {policies!r}; each must be one of {', '.join(_POLICIES)}.",
                param_hint="--policies",
            )
        warnings.simplefilter("ignore", ConvergenceWarning)
        console = Console()
        results: dict[str, list[RegretTrace]] = {}
        with rounds_progress(console) as progress:
            task = progress.add_task("simulating", total=rounds * seeds * len(chosen))
            done = 0
            for seed in range(seeds):
                world = CalloutWorld(
                    n_rounds=rounds, item_lifetime=lifetime, drift_sd=drift, rng=seed
                )
                make: dict[str, SimPolicy] = {
                    "uniform": UniformPolicy(),
                    "epsilon": EpsilonGreedyPolicy(),
                    "beta": BetaBernoulliPolicy(),
                    "fixed": AttributeTSPolicy(),
                    "naive": AttributeTSPolicy(meta_prior="naive"),
                    "deconvolved": AttributeTSPolicy(meta_prior="deconvolved"),
                    "oracle": OraclePolicy(world),
                }
                for key in chosen:
                    pol = make[key]
                    progress.update(task, description=f"seed {seed}: {pol.name}")

                    def tick(n: int, base: int = done) -> None:
                        progress.update(task, completed=base + n)

                    tr = run_policy(world, pol, batch_size=batch, rng=1000 + seed, progress=tick)
                    done += rounds
                    results.setdefault(pol.name, []).append(tr)
        table = Table(title=f"Callouts: cumulative regret at {rounds:,} rounds, {seeds} seeds")
        table.add_column("policy")
        table.add_column("cum. regret", justify="right")
        table.add_column("± SE", justify="right")
        table.add_column("clicks", justify="right")
        table.add_column("s/run", justify="right")
        summaries = summarise(results)
        for name, s in summaries.items():
            table.add_row(
                name, f"{s.mean:,.1f}", f"{s.se:,.1f}", f"{s.clicks:,.0f}", f"{s.seconds:.1f}"
            )
        console.print(table)
        if plot:
            plot_regret(
                summaries,
                plot,
                title="memberlab simulate callouts",
                ylabel="cumulative expected regret (mean over seeds, +-1 SE)",
            )
            console.print(f"regret curves written to {plot}")
