"""Reward recovery of every memberlab.choice estimator on the membership environment.

Run: ``.venv/bin/python benchmarks/choice_compare.py`` (``--quick``: 10^4 and 10^5
member-months, 3 seeds). Prints a markdown table for ``docs/choice_estimators.md``.

Panels of ``n / 20`` members x 20 months from :class:`memberlab.choice.MembershipEnv`
(seed ``1000 * seed + n % 997``), state columns ``status, months_left, delivery, video,
tier``. Every estimator runs with its library defaults (CCP and NFXP with the default
linear reward of :func:`memberlab.choice.linear_features`, as a user gets them).

Errors are against the true rewards in PQR's normalisation
(:meth:`MembershipEnv.identified_rewards`), over the feasible (state, action) pairs of the
states the panel observes:

- all pairs: root mean square, unweighted, divided by the s.d. of the true rewards over
  the same pairs;
- occupancy-weighted: root mean square weighted by the exact expected occupancy of the
  pair in the panel's design (initial distribution, true policy, 20 months), divided by
  the occupancy-weighted s.d. of the true rewards.

Means over seeds with standard errors; "ratio" is the estimator's mean over the best
estimator's mean at that size. Not part of the test run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_lines, single_thread_blas

single_thread_blas()

import numpy as np  # noqa: E402

from memberlab.choice import (  # noqa: E402
    CCP,
    NFXP,
    PQR,
    MembershipEnv,
    Panel,
    StructuralPQR,
    TabularPQR,
)

STATE = ["status", "months_left", "delivery", "video", "tier"]
ACTIONS = ["none", "monthly", "annual"]
MONTHS = 20


def occupancy(env: MembershipEnv, months: int = MONTHS) -> np.ndarray:
    """Exact expected share of decisions at each (state, action) over ``months``."""
    st = env.states
    w = np.where(st["status"] == "none", 6.0, np.where(st["status"] == "monthly", 2.0, 0.2))
    w = w * np.where(st["delivery"] == 0, 2.0, 1.0)
    d = w / w.sum()  # as MembershipEnv.initial_states
    pol = env.solve().policy
    occ = np.zeros_like(pol)
    for _ in range(months):
        occ += d[:, None] * pol
        d = np.einsum("sa,ast->t", d[:, None] * pol, env.transitions)
    return np.asarray(occ / occ.sum())


def reward_errors(
    env: MembershipEnv, occ: np.ndarray, panel: Panel, rewards: np.ndarray
) -> tuple[float, float]:
    """(all-pairs, occupancy-weighted) RMSE over feasible pairs, each over its s.d."""
    m = env.state_index(panel.states)
    f = panel.feasible
    truth = env.identified_rewards()[m][f]
    err = (rewards - env.identified_rewards()[m])[f]
    w = occ[m][f]
    all_pairs = float(np.sqrt(np.mean(err**2)) / truth.std())
    sd_w = float(np.sqrt(np.cov(truth, aweights=w)))
    weighted = float(np.sqrt(np.average(err**2, weights=w)) / sd_w)
    return all_pairs, weighted


def estimators(discount: float) -> dict[str, Callable[[], Any]]:
    return {
        "pqr (structural, default)": lambda: StructuralPQR(anchor="none", discount=discount),
        "pqr (structural, no shrinkage)": lambda: StructuralPQR(
            anchor="none", discount=discount, shrinkage=False
        ),
        "pqr-tabular": lambda: TabularPQR(anchor="none", discount=discount),
        "pqr-fa": lambda: PQR(anchor="none", discount=discount, rng=0),
        "ccp": lambda: CCP(anchor="none", discount=discount),
        "nfxp": lambda: NFXP(anchor="none", discount=discount),
    }


def mean_se(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v)
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0


def run_membership(sizes: list[int], n_seeds: int, only: list[str] | None = None) -> None:
    env = MembershipEnv()
    occ = occupancy(env)
    ests = estimators(env.discount)
    if only is not None:
        unknown = sorted(set(only) - set(ests))
        if unknown:
            raise SystemExit(f"--estimators: unknown {unknown}; known: {list(ests)}")
        ests = {k: v for k, v in ests.items() if k in only}
    print(
        "| member-months | estimator | all pairs (RMSE / s.d.) | ratio to best "
        "| occupancy-weighted | ratio to best | seconds per fit |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        rows: dict[str, dict[str, list[float]]] = {k: {"u": [], "w": [], "t": []} for k in ests}
        for seed in range(n_seeds):
            frame = env.simulate(n // MONTHS, MONTHS, rng=1000 * seed + n % 997)
            panel = Panel.from_frame(
                frame,
                id="member",
                time="month",
                state=STATE,
                action="action",
                actions=ACTIONS,
                feasible="feasible",
            )
            for k, make in ests.items():
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = make().fit(panel)
                rows[k]["t"].append(time.perf_counter() - t0)
                u, w = reward_errors(env, occ, panel, res.rewards)
                rows[k]["u"].append(u)
                rows[k]["w"].append(w)
        best_u = min(np.mean(r["u"]) for r in rows.values())
        best_w = min(np.mean(r["w"]) for r in rows.values())
        for k, r in rows.items():
            mu, su = mean_se(r["u"])
            mw, sw = mean_se(r["w"])
            print(
                f"| {n:,} | {k} | {mu:.3f} ± {su:.3f} | {mu / best_u:.2f} "
                f"| {mw:.3f} ± {sw:.3f} | {mw / best_w:.2f} | {np.mean(r['t']):.2f} |",
                flush=True,
            )


def bus_grid_panel(env: Any, frame: Any, width: float) -> Panel:
    """The bus panel on a grid: mileage in bins of ``width``, each noise dim in 2 halves.

    Bins are represented by their midpoints (numeric), so a linear reward on the grid
    has the same coefficients as on the continuous state.
    """
    g = frame.copy()
    g["s0"] = (np.floor(g["s0"] / width) + 0.5) * width
    for c in env.state_cols[1:]:
        g[c] = np.where(g[c] < 0, -2.5, 2.5)
    return Panel.from_frame(
        g, id="bus", time="t", state=env.state_cols, action="action", actions=["replace", "keep"]
    )


def run_bus(seeds: list[int], width: float) -> None:
    from memberlab.choice import BusEnv, deep_pqr

    env = BusEnv()
    truth = env.true_coef
    names = ["Deep PQR (MLPs, continuous)"]
    if importlib.util.find_spec("torch") is not None:
        names.append("Deep PQR (torch MLPs, continuous)")
    names += [
        "linear-feature PQR (grid)",
        "CCP (grid)",
        "NFXP (grid)",
    ]
    errs: dict[str, list[float]] = {k: [] for k in names}
    coefs: dict[str, list[np.ndarray]] = {k: [] for k in names}
    times: dict[str, list[float]] = {k: [] for k in names}
    for seed in seeds:
        frame = env.simulate(5000, rng=seed)
        cont = Panel.from_frame(
            frame,
            id="bus",
            time="t",
            state=env.state_cols,
            action="action",
            actions=["replace", "keep"],
            continuous=env.state_cols,
        )
        grid = bus_grid_panel(env, frame, width)
        for k in names:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if k.startswith("Deep"):
                    res = deep_pqr(
                        anchor="replace",
                        discount=env.discount,
                        rng=seed,
                        transitions_max_states=0,
                        backend="torch" if "torch" in k else "sklearn",
                    ).fit(cont)
                    x = cont.states[env.state_cols].to_numpy(float)
                    xx = np.column_stack([np.ones(len(x)), x])
                    coef = np.linalg.lstsq(xx, res.rewards[:, 1], rcond=None)[0]
                else:
                    est = {
                        "linear-feature PQR (grid)": StructuralPQR(
                            anchor="replace", discount=env.discount, shrinkage=False
                        ),
                        "CCP (grid)": CCP(anchor="replace", discount=env.discount),
                        "NFXP (grid)": NFXP(anchor="replace", discount=env.discount),
                    }[k]
                    coef = np.asarray(est.fit(grid).params)
            times[k].append(time.perf_counter() - t0)
            coefs[k].append(coef)
            errs[k].append(float(((coef - truth) ** 2).sum()))
    print(
        "| estimator | squared error, seed "
        + " | seed ".join(str(s) for s in seeds)
        + " | mean | mean coefficients (const, s0, s1, s2) | seconds per fit |"
    )
    print("| --- " * (len(seeds) + 4) + "|")
    for k in names:
        c = np.mean(coefs[k], axis=0)
        print(
            f"| {k} | "
            + " | ".join(f"{e:.3f}" for e in errs[k])
            + f" | {np.mean(errs[k]):.3f} | ({', '.join(f'{v:.2f}' for v in c)}) "
            f"| {np.mean(times[k]):.1f} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^4 and 10^5, 3 seeds")
    ap.add_argument("--seeds", type=int, default=10, help="seeds per size (default 10)")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[10_000, 100_000, 1_000_000],
        help="member-months per panel",
    )
    ap.add_argument(
        "--estimators",
        nargs="*",
        default=None,
        help="only these rows of the membership table (default: all); e.g. to re-run "
        "the estimators a change affects",
    )
    ap.add_argument("--bus", action="store_true", help="the bus environment only")
    ap.add_argument("--bus-width", type=float, default=0.5, help="mileage bin width")
    args = ap.parse_args()
    if args.bus:
        print("memberlab.choice: Deep PQR on the bus environment (Geng et al., ICML 2020)")
        for line in machine_lines(("memberlab", "numpy", "scipy", "scikit-learn")):
            print("  " + line)
        print(f"\n5,000 transitions, discount 0.9, grid: mileage bins of {args.bus_width}\n")
        run_bus([0, 1, 10], args.bus_width)
        return
    sizes, seeds = (args.sizes, args.seeds) if not args.quick else ([10_000, 100_000], 3)
    print("memberlab.choice estimator comparison")
    for line in machine_lines(("memberlab", "numpy", "scipy", "scikit-learn")):
        print("  " + line)
    print(f"\nmembership environment: {seeds} seeds per size, {MONTHS} months per member\n")
    run_membership(sizes, seeds, args.estimators)


if __name__ == "__main__":
    main()
