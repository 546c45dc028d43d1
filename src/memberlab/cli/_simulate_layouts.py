"""``memberlab simulate layouts``: regret of layout policies on simulators with known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from memberlab.cli._simulate_progress import rounds_progress

_MODELS = ("basin", "pairwise")


def _parse_policies(value: str) -> list[str]:
    from memberlab.layouts.regret import POLICIES

    names = [p.strip() for p in value.split(",") if p.strip()]
    if not names:
        raise typer.BadParameter(f"--policies == {value!r}, must name at least one policy.")
    for n in names:
        if n not in POLICIES:
            raise typer.BadParameter(
                f"--policies names {n!r}; allowed: {', '.join(POLICIES)} (comma separated)."
            )
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"--policies == {value!r} lists a policy twice.")
    return names


def register(app: typer.Typer) -> None:
    """Add the ``layouts`` command to ``memberlab simulate``."""

    @app.command("layouts")
    def layouts(
        model: str = typer.Option(
            "basin", help="Simulator: 'basin' (best layout only via interactions) or 'pairwise'."
        ),
        slots: int = typer.Option(5, min=2, max=12, help="Number of slots."),
        variants: int = typer.Option(4, min=2, max=20, help="Variants per slot."),
        policies: str = typer.Option(
            "mvt2,mvt1,arm-per-layout,per-slot",
            help="Comma-separated: mvt2, mvt2-exact, mvt1, arm-per-layout, per-slot.",
        ),
        rounds: int = typer.Option(20_000, min=1, help="Rounds per run."),
        seeds: int = typer.Option(3, min=1, max=1000, help="Independent runs per policy."),
        batch: int = typer.Option(500, min=1, help="Rounds between posterior updates."),
        restarts: int = typer.Option(4, min=1, max=1000, help="Hill-climbing restarts."),
        seed: int = typer.Option(0, min=0, help="Master seed."),
        out: Path = typer.Option(
            Path("layouts_regret.png"), help="Where to write the regret plot (PNG)."
        ),
    ) -> None:
        """Cumulative regret of layout policies against a simulator with ground truth."""
        from rich.console import Console
        from rich.table import Table

        from memberlab.evaluation.regret import RegretTrace, plot_regret, summarise
        from memberlab.layouts.regret import make_learner, run_regret
        from memberlab.layouts.simulate import basin_model, random_pairwise_model

        if model not in _MODELS:
            raise typer.BadParameter(
                f"--model == {model!r}, must be one of {', '.join(_MODELS)}.", param_hint="--model"
            )
        names = _parse_policies(policies)
        n_layouts = variants**slots
        limit = 5_000_000
        for n in names:
            if n in ("mvt2-exact", "arm-per-layout") and n_layouts > limit:
                raise typer.BadParameter(
                    f"{n} enumerates every layout: --variants ** --slots == {n_layouts}, "
                    f"must be <= {limit}.",
                    param_hint="--policies",
                )
        if model == "basin" and variants < 2:  # pragma: no cover - typer enforces min
            raise typer.BadParameter("--variants must be >= 2.")
        if out.suffix.lower() != ".png":
            raise typer.BadParameter(f"--out == {str(out)!r}, must end in .png.")

        console = Console()
        seqs = np.random.SeedSequence(seed).spawn(seeds)
        traces: dict[str, list[RegretTrace]] = {n: [] for n in names}
        optimum_p: list[float] = []
        with rounds_progress(console) as progress:
            task = progress.add_task("simulating", total=rounds * seeds * len(names))
            for i, ss in enumerate(seqs):
                sim_seq, pol_seq, env_seq = ss.spawn(3)
                # common random numbers: every policy of a seed starts from the same generators
                pol_state, env_state = pol_seq.generate_state(4), env_seq.generate_state(4)
                try:
                    if model == "basin":
                        sim = basin_model(n_slots=slots, n_variants=variants, rng=sim_seq)
                    else:
                        sim = random_pairwise_model(n_slots=slots, n_variants=variants, rng=sim_seq)
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from exc
                optimum_p.append(sim.optimum()[1])
                for name in names:
                    progress.update(task, description=f"seed {i + 1}/{seeds} {name}")
                    done_before = int(progress.tasks[0].completed)

                    def advance(d: int, before: int = done_before) -> None:
                        progress.update(task, completed=before + d)

                    learner = make_learner(
                        name,
                        sim.space,
                        n_restarts=restarts,
                        rng=np.random.SeedSequence(pol_state),
                    )
                    trace = run_regret(
                        sim,
                        learner,
                        rounds=rounds,
                        batch=batch,
                        rng=np.random.default_rng(env_state),
                        on_batch=advance,
                    )
                    traces[name].append(trace)

        table = Table(
            title=f"{model} model, {slots} slots x {variants} variants ({n_layouts:,} layouts), "
            f"{rounds:,} rounds, {seeds} seeds"
        )
        for col in ("policy", "cum. regret", "s.e.", "regret/round", "at optimum", "s/run"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        summaries = summarise(traces)
        best = min(names, key=lambda n: summaries[n].mean)
        for name, s in summaries.items():
            table.add_row(
                name,
                f"{s.mean:,.1f}",
                f"{s.se:,.1f}" if s.n_runs > 1 else "nan",
                f"{s.mean / rounds:.4f}",
                f"{s.at_optimum or 0.0:.0%}",
                f"{s.seconds:.1f}",
                style="bold green" if name == best else None,
            )
        console.print(table)
        console.print(f"mean click rate of the best layout: {np.mean(optimum_p):.4f}")
        path = plot_regret(
            summaries, out, title=f"{model}: {slots} slots x {variants} variants, {seeds} seeds"
        )
        console.print(f"regret plot written to {path}")
