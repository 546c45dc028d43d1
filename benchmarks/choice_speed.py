"""Speed of memberlab.choice: NFXP on Rust's bus data, PQR on member panels.

Run: ``.venv/bin/python benchmarks/choice_speed.py`` (add ``--quick`` to skip 10^6).

Prints the machine and versions, then timings and ratios against baselines measured in
the same run: NFXP's inner loop with plain value iteration against Newton-Kantorovich,
and econirl's NFXP when it is importable. Not part of the test run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
import sklearn

from memberlab.choice import (
    PQR,
    MembershipEnv,
    Panel,
    TabularPQR,
    fit_rust,
    load_rust_bus,
    rust_states,
    solve_values,
)
from memberlab.choice._rust import _increment_transitions


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def header() -> None:
    print("memberlab.choice speed benchmark")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy "
        f"{scipy.__version__}, scikit-learn {sklearn.__version__}"
    )
    print()


def rust_bench() -> None:
    frame = load_rust_bus()
    data = rust_states(frame, groups=(1, 2, 3, 4), bins=175)
    t_nk, res = timed(lambda: fit_rust(data, discount=0.9999), repeat=3)
    print("NFXP, Rust groups 1-4, 175 cells, beta=0.9999 (three stages, full likelihood)")
    print(
        f"  Newton-Kantorovich inner loop: {t_nk:.3f} s  (RC={res.rc:.4f}, "
        f"theta11={res.theta11:.4f}, LL={res.loglik:.3f}, target < 1 s)"
    )
    # one inner fixed point at the estimates: value iteration vs Newton-Kantorovich
    trans, _ = _increment_transitions(175, len(res.theta3))(res.theta3[:-1])
    grid = np.arange(175.0)
    rewards = np.column_stack([-0.001 * res.theta11 * grid, np.full(175, -res.rc)])
    feas = np.ones((175, 2), dtype=bool)
    t_fp_nk, s_nk = timed(lambda: solve_values(rewards, trans, feas, 0.9999), repeat=5)
    t_fp_vi, s_vi = timed(
        lambda: solve_values(rewards, trans, feas, 0.9999, method="contraction", tol=1e-9)
    )
    print(
        f"  one fixed point: NK {t_fp_nk * 1e3:.2f} ms ({s_nk.n_contraction} contraction + "
        f"{s_nk.n_newton} Newton steps); value iteration {t_fp_vi:.2f} s "
        f"({s_vi.n_contraction} steps); ratio VI/NK = {t_fp_vi / t_fp_nk:.0f}x"
    )
    t_nk99, _ = timed(lambda: fit_rust(data, discount=0.99))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_vi99, _ = timed(lambda: fit_rust(data, discount=0.99, method="contraction"))
    print(
        f"  full estimation at beta=0.99: NK {t_nk99:.3f} s, value iteration {t_vi99:.2f} s, "
        f"ratio {t_vi99 / t_nk99:.1f}x"
    )
    if importlib.util.find_spec("econirl") is not None:
        econirl_bench(frame, data, res.theta3, t_nk)
    else:
        print("  econirl: not installed (pip install econirl), no peer comparison.")
    print()


def econirl_bench(frame: Any, data: Any, theta3: Any, t_ours: float) -> None:
    """econirl's NFXP on the same observations and the same (fixed) transitions.

    econirl estimates the choice part given transitions; it is handed ours (the
    increment probabilities at our estimates) and the same 8,156 observations, so its
    choice log-likelihood must equal ours at the optimum.
    """
    import pandas as pd
    from econirl import NFXP
    from econirl.datasets import rust_bus_reward_spec

    f = frame[frame["group"].isin((1, 2, 3, 4))].sort_values(["bus_id", "period"])
    bus = f["bus_id"].to_numpy()
    keep = np.r_[False, bus[1:] == bus[:-1]]
    df = pd.DataFrame(
        {"bus_id": bus[keep], "mileage_bin": data.states - 1, "replaced": data.decisions}
    )
    n = 175
    trans = np.zeros((2, n, n))
    for s in range(n):
        for j, pj in enumerate(theta3):
            trans[0, s, min(s + j, n - 1)] += pj
            trans[1, s, min(j, n - 1)] += pj

    def run() -> Any:
        m = NFXP(n_states=n, discount=0.9999, utility=rust_bus_reward_spec(n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return m.fit(
                data=df, state="mileage_bin", action="replaced", id="bus_id", transitions=trans
            )

    t_first, _ = timed(run)  # includes JAX compilation
    t_e, m = timed(run)
    ours = fit_rust(data, discount=0.9999)
    print(
        f"  econirl {importlib.metadata.version('econirl')} NFXP (choice part, transitions "
        f"given): {t_e:.2f} s (first call {t_first:.2f} s with compilation); RC="
        f"{m.params_['replacement_cost']:.4f}, theta11={1000 * m.params_['operating_cost']:.4f}, "
        f"choice LL={m.log_likelihood_:.3f} vs ours {ours.loglik_choice:.3f}; "
        f"econirl / memberlab (all three stages) = {t_e / t_ours:.0f}x"
    )


def pqr_bench(quick: bool) -> None:
    env = MembershipEnv()
    state = ["status", "months_left", "delivery", "video", "tier"]
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    print("PQR on the membership environment (252 states, 20 months per member)")
    print(
        f"  {'member-months':>13} {'simulate':>9} {'panel':>8} {'tabular':>8} "
        f"{'FA-PQR':>8} {'FA/tab':>7}"
    )
    for n in sizes:
        t_sim, frame = timed(lambda n=n: env.simulate(n // 20, 20, rng=0))
        t_pan, panel = timed(
            lambda frame=frame: Panel.from_frame(
                frame,
                id="member",
                time="month",
                state=state,
                action="action",
                actions=["none", "monthly", "annual"],
                feasible="feasible",
            )
        )
        t_tab, _ = timed(
            lambda panel=panel: TabularPQR(anchor="none", discount=env.discount, smoothing=0.5).fit(
                panel
            ),
            repeat=3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_fa, _ = timed(
                lambda panel=panel: PQR(anchor="none", discount=env.discount, rng=0).fit(panel)
            )
        print(
            f"  {n:>13,} {t_sim:>8.2f}s {t_pan:>7.2f}s {t_tab:>7.3f}s {t_fa:>7.2f}s "
            f"{t_fa / t_tab:>6.0f}x"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Skip 10^6 member-months.")
    args = parser.parse_args()
    header()
    rust_bench()
    pqr_bench(args.quick)


if __name__ == "__main__":
    main()
