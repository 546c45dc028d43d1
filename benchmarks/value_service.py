"""Value objective vs click objective through real ``memberlab serve`` processes.

The world (:class:`memberlab.value.ValueWorld`, seed 0): shoppers in membership-environment
states; "deal" callouts win clicks and monthly sign-ups, "annual" callouts fewer clicks and
annual sign-ups that grow with delivery use, so clicks and value disagree by state. A
choice model is written by the real ``memberlab choice fit`` command (TabularPQR on a
panel of the environment, 20,000 members x 24 months, seed 1). Per seed, one shopper
stream goes through a real ``memberlab serve --objective value --choice-model DIR``
process and a real ``memberlab serve --objective clicks`` process (fresh SQLite each,
trainer process running every 0.5 s, attribution window 300 client seconds, one client
second per round, events posted every 100 rounds), and through the random and oracle
policies in process (:func:`memberlab.service.value_world.run_objectives`). Reported: the
share of the oracle-minus-random gap in true expected value per impression captured in
the last quarter of rounds, per objective and seed, and the library-level run of the
same policies on the same streams (``benchmarks/value_regret.py``'s policies) as the
baseline.

    .venv/bin/python benchmarks/value_service.py                 # 12,000 rounds, 3 seeds
    .venv/bin/python benchmarks/value_service.py --quick         # 3,000 rounds, 1 seed
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import single_thread_blas

single_thread_blas()

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import mean_se, print_banner  # noqa: E402
from memberlab.service.value_world import run_objectives  # noqa: E402
from memberlab.value import (  # noqa: E402
    ENV_PRICES,
    ClickObjective,
    ValueObjective,
    ValueWorld,
    member_values,
    run_value_world,
)
from value_regret import CROSSES, fit_choice_model  # noqa: E402

SERVE = [
    "--crosses",
    ",".join(f"{a}:{b}" for a, b in CROSSES),
    "--attribution-window",
    "300",
    "--train-interval",
    "0.5",
    *("--price", "monthly=price_monthly", "--price", "annual=price_annual"),
    "--value-horizon",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--members", type=int, default=20_000, help="panel members for the fit")
    ap.add_argument("--no-library", action="store_true", help="skip the library baseline")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seeds = 3000, 1
    print_banner("value objective through the service", ("memberlab", "numpy", "httpx"))
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    world = ValueWorld(rng=0)
    serve = [*SERVE, str(world.horizon)]
    shares: dict[str, list[float]] = {"clicks": [], "value": [], "lib-click": [], "lib-value": []}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = fit_choice_model(world, Path(tmp), args.members)
        print(f"memberlab choice fit: {res.estimator}, {res.n_states} states, "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        vals = member_values(res, prices=ENV_PRICES, horizon=world.horizon)
        for seed in range(args.seeds):
            run = run_objectives(
                world, Path(tmp) / "model", tmp, seed=seed, n_rounds=args.rounds, serve_args=serve
            )
            line = (
                f"seed {seed}: value/impression random={run.value['random']:.4f} "
                f"oracle={run.value['oracle']:.4f} clicks(service)={run.value['clicks']:.4f} "
                f"value(service)={run.value['value']:.4f}; gap captured "
                f"value={run.gap_share('value'):.1%} clicks={run.gap_share('clicks'):.1%}"
                f" [{run.seconds['value']:.0f} s, {run.seconds['clicks']:.0f} s]"
            )
            shares["clicks"].append(run.gap_share("clicks"))
            shares["value"].append(run.gap_share("value"))
            if not args.no_library:
                gap = run.value["oracle"] - run.value["random"]
                for name, pol in (
                    ("lib-click", ClickObjective(world, crosses=CROSSES)),
                    ("lib-value", ValueObjective(world, vals, crosses=CROSSES)),
                ):
                    tr = run_value_world(world, pol, n_rounds=args.rounds, batch=100, rng=seed)
                    shares[name].append((tr.last_quarter()[0] - run.value["random"]) / gap)
                line += (
                    f"; library value={shares['lib-value'][-1]:.1%} "
                    f"click={shares['lib-click'][-1]:.1%}"
                )
            print(line, flush=True)
    print(f"\nshare of the oracle-random value gap, last quarter of {args.rounds:,} rounds, "
          f"{args.seeds} seeds (mean +- s.e.)")  # fmt: skip
    for name, got in shares.items():
        if got:
            m, se = mean_se(np.array(got))
            print(
                f"{name:<10}{m:>8.1%} +- {se:.1%}   per seed: {', '.join(f'{g:.1%}' for g in got)}"
            )


if __name__ == "__main__":
    main()
