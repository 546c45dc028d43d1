"""Value objective vs click objective vs random vs oracle on a world where they disagree.

The world (:class:`memberlab.value.ValueWorld`): shoppers in membership-environment
states; "deal" callouts win clicks and monthly sign-ups, "annual" callouts fewer clicks
and annual sign-ups that grow with delivery use. The value objective's member values come
from a choice model written by ``memberlab choice fit`` (default TabularPQR) on a panel of
the environment (20,000 members x 24 months, seed 1); the truth is the environment's own
member value. Every policy meets the same shopper stream per seed; feedback is applied in
batches of 200 impressions. Reported: mean true expected value per impression and click
rate in the last quarter of rounds, the share of the oracle-minus-random value gap
captured, over seeds with standard errors. Library level (no HTTP service).

    .venv/bin/python benchmarks/value_regret.py                 # 12,000 rounds, 5 seeds
    .venv/bin/python benchmarks/value_regret.py --quick         # 3,000 rounds, 2 seeds
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import single_thread_blas

single_thread_blas()

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import mean_se, print_banner  # noqa: E402
from memberlab.choice import ChoiceResults  # noqa: E402
from memberlab.value import (  # noqa: E402
    ENV_PRICES,
    ClickObjective,
    OraclePolicy,
    RandomPolicy,
    ValueObjective,
    ValueWorld,
    member_values,
    run_value_world,
)

CROSSES = [("delivery", "pitch"), ("status", "pitch")]
STATE = "status,months_left,delivery,video,tier,price_monthly,price_annual"


def fit_choice_model(world: ValueWorld, out: Path, members: int) -> ChoiceResults:
    """Simulate a panel and fit it with the real ``memberlab choice fit`` command."""
    assert world.env is not None
    panel = out / "panel.csv"
    world.env.simulate(members, 24, rng=1).to_csv(panel, index=False)
    cmd = [
        sys.executable, "-m", "memberlab.cli.main", "choice", "fit", str(panel),
        "--id", "member", "--time", "month", "--state", STATE, "--action", "action",
        "--anchor", "none", "--discount", str(world.env.discount), "--feasible", "feasible",
        "--out", str(out / "model"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ChoiceResults.load(out / "model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--members", type=int, default=20_000, help="panel members for the fit")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seeds = 3000, 2
    print_banner("value objective regret", ("memberlab", "numpy", "scipy", "pandas"))
    world = ValueWorld(rng=0)
    print(world.summary().to_string(index=False))
    with tempfile.TemporaryDirectory() as tmp:
        res = fit_choice_model(world, Path(tmp), args.members)
    vals = member_values(res, prices=ENV_PRICES, horizon=world.horizon)
    truth = world.true_values
    idx = truth.codes(vals.states)
    cols = [truth.action_index(a) for a in vals.actions]  # the fit orders actions by name
    a0 = vals.action_index(vals.anchor)
    sup = (res.counts >= 30) & (res.counts[:, [a0]] >= 30)
    sup[:, a0] = False
    err = np.abs(vals.values - truth.values[idx][:, cols])[sup]
    print(
        f"choice model: {res.estimator}, {res.n_states} states; |value error| on {sup.sum()} "
        f"(state, plan) pairs chosen >= 30 times: max {err.max():.3f}, mean {err.mean():.3f}"
    )
    names = ("random", "oracle", "click", "value")
    got: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    secs: dict[str, float] = dict.fromkeys(names, 0.0)
    for seed in range(args.seeds):
        pols = {
            "random": RandomPolicy(world),
            "oracle": OraclePolicy(world),
            "click": ClickObjective(world, crosses=CROSSES),
            "value": ValueObjective(world, vals, crosses=CROSSES),
        }
        for name, pol in pols.items():
            t0 = time.perf_counter()
            tr = run_value_world(world, pol, n_rounds=args.rounds, rng=seed)
            secs[name] += time.perf_counter() - t0
            got[name].append(tr.last_quarter())
        row = {n: got[n][-1][0] for n in names}
        gap = row["oracle"] - row["random"]
        print(
            f"seed {seed}: value per impression "
            + " ".join(f"{n}={row[n]:.4f}" for n in names)
            + f"; gap captured value={(row['value'] - row['random']) / gap:.1%} "
            f"click={(row['click'] - row['random']) / gap:.1%}"
        )
    print(f"\nlast quarter of {args.rounds:,} rounds, {args.seeds} seeds (mean +- s.e.)")
    print(
        f"{'policy':<8}{'value/impr.':>14}{'+-':>8}{'click rate':>12}{'+-':>8}"
        f"{'gap captured':>14}{'+-':>8}{'s/run':>8}"
    )
    rnd = np.array([v for v, _ in got["random"]])
    orc = np.array([v for v, _ in got["oracle"]])
    for n in names:
        v = np.array([x for x, _ in got[n]])
        c = np.array([y for _, y in got[n]])
        cap = (v - rnd) / (orc - rnd)
        mv, sv = mean_se(v)
        mc, sc = mean_se(c)
        mg, sg = mean_se(cap)
        print(
            f"{n:<8}{mv:>14.4f}{sv:>8.4f}{mc:>12.4f}{sc:>8.4f}{mg:>14.1%}{sg:>8.1%}"
            f"{secs[n] / args.seeds:>8.1f}"
        )


if __name__ == "__main__":
    main()
