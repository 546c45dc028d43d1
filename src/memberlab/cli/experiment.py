"""``memberlab experiment``: read out a randomised holdout from logged decisions."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import typer

from memberlab.cli._common import DB_HELP as _DB_HELP
from memberlab.cli._common import fail as _fail

app = typer.Typer(help="Holdout experiments: the readout of the lift.", no_args_is_help=True)


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _read(path: Path, values: Any = None) -> tuple[Any, int]:
    """One row per decision, and the decisions left out as pending: an export (one row
    per served item) is reduced to its closed decisions; a CSV is taken as it is. With
    ``values`` (member values) an export's reward is the member value of each row's
    converted plan in its state, as for ``evaluate logs --reward value``."""
    import pandas as pd

    from memberlab import DataValidationError
    from memberlab.evaluation.dataset import _value_rewards
    from memberlab.evaluation.experiment import per_decision

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        if values is not None:
            frame = frame.assign(reward=_value_rewards(frame, values, path))
        if "status" in frame.columns and "decision_id" in frame.columns:
            return per_decision(frame)
        return frame, 0
    if values is not None:
        raise DataValidationError(
            f"{path}: --choice-model reads an export (.parquet) of 'memberlab logs export "
            "--kind value'."
        )
    return pd.read_csv(path), 0


def _value_readout(
    file: Path | None,
    choice_model: Path,
    horizon: int,
    prices: list[str],
    database_url: str | None,
    kind: str,
    space: str | None,
    since: str | None,
    until: str | None,
    **kw: Any,
) -> dict[str, Any]:
    """The readout with member value as the reward, from FILE or from the database's
    decisions of ``kind`` exported first (``value``: the default kind is callouts)."""
    import tempfile

    from memberlab.cli.evaluate import _export
    from memberlab.evaluation.experiment import holdout_report
    from memberlab.value import values_from_model

    values = values_from_model(choice_model, horizon=horizon, prices=prices)
    with tempfile.TemporaryDirectory() as tmp:
        if file is None:
            kind = "value" if kind == "callouts" else kind
            file = _export(Path(tmp) / "logs.parquet", database_url, kind, space, since, until)
        frame, pending = _read(file, values)
    return holdout_report(frame, pending=pending, **kw)


@app.command("readout")
def readout(
    file: Path | None = typer.Argument(
        None,
        help="Export (.parquet) or CSV, one row per decision; without it, the decisions "
        "in the database (--database-url).",
    ),
    database_url: str | None = typer.Option(None, help=_DB_HELP),
    kind: str = typer.Option(
        "callouts",
        help="From the database: callouts, layouts or value (the callouts of --objective value).",
    ),
    space: str | None = typer.Option(None, help="From the database: only this layout space."),
    since: str | None = typer.Option(None, help="From the database: decisions at or after."),
    until: str | None = typer.Option(None, help="From the database: decisions before."),
    unit: str = typer.Option("unit_id", help="Column of the unit id."),
    arm: str = typer.Option("assignment", help="Column of the arm (holdout or policy)."),
    reward: str = typer.Option("reward", help="Column of the reward."),
    covariates: Path | None = typer.Option(
        None, help="CSV of a pre-period covariate per unit (columns: unit id, value), for CUPED."
    ),
    holdout_fraction: float | None = typer.Option(None, help="Configured holdout share (SRM)."),
    level: float = typer.Option(0.95, help="Interval level."),
    tuning_units: float = typer.Option(10_000, help="Units the confidence sequence is tuned for."),
    every: float | None = typer.Option(
        None, help="Seconds per point of the lift series (default: about 20 points)."
    ),
    choice_model: Path | None = typer.Option(
        None,
        help="Reward: the member value of the plan each impression converted to (0 without "
        "a conversion), by this choice model (DIR written by 'memberlab choice fit'); reads "
        "an export of --kind value (FILE, else the database's --kind value decisions).",
    ),
    value_horizon: int = typer.Option(24, min=1, help="With --choice-model: months of revenue."),
    price: list[str] = typer.Option(
        [],
        "--price",
        help="With --choice-model: ACTION=COLUMN|AMOUNT, as for 'memberlab serve' "
        "(default: each plan's price_<plan> state column).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Lift of the policy over the holdout, clustered by unit, with CUPED, an always-valid
    confidence sequence and a sample-ratio-mismatch test; the same JSON as
    ``GET /v1/admin/experiment`` (from the database, or from its export)."""
    import pandas as pd
    from sqlalchemy.exc import SQLAlchemyError

    from memberlab import MemberlabError
    from memberlab.evaluation.experiment import holdout_report
    from memberlab.store._export import parse_time

    try:
        cov = None
        if covariates is not None:
            c = pd.read_csv(covariates)
            if c.shape[1] < 2:
                _fail(f"{covariates} must have two columns: unit id and covariate.")
            cov = dict(zip(c.iloc[:, 0].astype(str), c.iloc[:, 1].astype(float), strict=True))
        kw: dict[str, Any] = {
            "covariates": cov, "holdout_fraction": holdout_fraction, "level": level,
            "cs_tuning_units": tuning_units, "every": every,
        }  # fmt: skip
        if choice_model is not None:
            out = _value_readout(
                file, choice_model, value_horizon, price, database_url, kind, space, since,
                until, unit=unit, arm=arm, reward=reward, **kw,
            )  # fmt: skip
        elif file is not None:
            frame, pending = _read(file)
            out = holdout_report(frame, unit=unit, arm=arm, reward=reward, pending=pending, **kw)
        else:
            from memberlab.service._experiment import experiment_report
            from memberlab.store import Store

            store = Store(database_url or os.environ.get("MEMBERLAB_DATABASE_URL"), migrate=False)
            try:
                out = experiment_report(
                    store, kind, space=space, since=parse_time(since, "--since"),
                    until=parse_time(until, "--until"), **kw,
                )  # fmt: skip
            finally:
                store.close()
    except (MemberlabError, OSError, ValueError, SQLAlchemyError) as exc:
        _fail(str(exc))
        return
    out = _clean(out)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if not out["ready"]:
        typer.echo(f"not ready: {out['reason']}")
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
    srm = out["srm"]
    if srm.get("p_value") is not None:
        typer.echo(
            f"SRM p = {srm['p_value']:.3g}"
            + ("  ! sample ratio mismatch" if srm["mismatch"] else "")
        )
    if srm.get("units_in_both_arms"):
        typer.echo(f"! {srm['units_in_both_arms']} unit(s) seen in both arms: the split is broken")
    if "cuped" in out:
        cu = out["cuped"]
        typer.echo(
            f"CUPED reward/unit lift {cu['absolute']:+.4f} [{cu['lower']:+.4f}, {cu['upper']:+.4f}]"
            f", variance reduction {100 * cu['variance_reduction']:.0f}%"
        )
