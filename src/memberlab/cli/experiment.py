"""``memberlab experiment``: read out a randomised holdout from logged decisions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from memberlab.cli._common import fail as _fail

app = typer.Typer(help="Holdout experiments: the readout of the lift.", no_args_is_help=True)


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


def _read(path: Path) -> Any:
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        if "status" in frame.columns:  # an export: pending rows have no reward yet
            frame = frame[frame["status"] == "closed"]
        return frame
    return pd.read_csv(path)


@app.command("readout")
def readout(
    file: Path = typer.Argument(..., help="Export (.parquet) or CSV, one row per decision."),
    unit: str = typer.Option("unit_id", help="Column of the unit id."),
    arm: str = typer.Option("assignment", help="Column of the arm (holdout or policy)."),
    reward: str = typer.Option("reward", help="Column of the reward."),
    covariates: Path | None = typer.Option(
        None, help="CSV of a pre-period covariate per unit (columns: unit id, value), for CUPED."
    ),
    holdout_fraction: float | None = typer.Option(None, help="Configured holdout share (SRM)."),
    level: float = typer.Option(0.95, help="Interval level."),
    tuning_units: float = typer.Option(10_000, help="Units the confidence sequence is tuned for."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Lift of the policy over the holdout, clustered by unit, with CUPED, an always-valid
    confidence sequence and a sample-ratio-mismatch test."""
    import pandas as pd

    from memberlab import MemberlabError
    from memberlab.evaluation.experiment import readout as _readout

    try:
        frame = _read(file)
        cov = None
        if covariates is not None:
            c = pd.read_csv(covariates)
            if c.shape[1] < 2:
                _fail(f"{covariates} must have two columns: unit id and covariate.")
            cov = dict(zip(c.iloc[:, 0].astype(str), c.iloc[:, 1].astype(float), strict=True))
        res = _readout(
            frame, unit=unit, arm=arm, reward=reward, covariates=cov,
            holdout_fraction=holdout_fraction, level=level, cs_tuning_units=tuning_units,
        )  # fmt: skip
    except (MemberlabError, OSError, ValueError) as exc:
        _fail(str(exc))
        return
    out = _clean(res.to_dict())
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for name, a in out["arms"].items():
        typer.echo(
            f"{name:<8} units {a['units']:>8}  decisions {a['decisions']:>9}  "
            f"reward/decision {a['reward_per_decision']:.5f}  "
            f"reward/unit {a['reward_per_unit']:.4f}"
        )
    lift, cs = out["lift"], out["confidence_sequence"]
    typer.echo(
        f"lift {lift['absolute']:+.5f} [{lift['lower']:+.5f}, {lift['upper']:+.5f}] "
        f"({100 * lift['relative']:+.1f}%), always-valid [{cs['lower']:+.5f}, {cs['upper']:+.5f}]"
    )
    if out["srm"].get("p_value") is not None:
        typer.echo(f"SRM p = {out['srm']['p_value']:.3g}")
    if "cuped" in out:
        cu = out["cuped"]
        typer.echo(
            f"CUPED reward/unit lift {cu['absolute']:+.4f} [{cu['lower']:+.4f}, {cu['upper']:+.4f}]"
            f", variance reduction {100 * cu['variance_reduction']:.0f}%"
        )
