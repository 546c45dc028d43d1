"""Regret of MVT2 against the baselines on the basin simulator, with a plot.

Run: .venv/bin/python examples/layouts_regret.py  (about a minute)
"""

from __future__ import annotations

import numpy as np

from memberlab.layouts.regret import make_learner, plot_regret, run_regret
from memberlab.layouts.simulate import basin_layouts, basin_model

sim = basin_model(n_slots=5, n_variants=4, rng=3)
A, B = basin_layouts(sim)
print("main-effects optimum A:", sim.space.from_indices(A), sim.expected_reward(A[None])[0])
print("global optimum B:      ", sim.space.from_indices(B), sim.expected_reward(B[None])[0])

traces = {}
for name in ("mvt2", "mvt1", "arm-per-layout", "per-slot"):
    runs = []
    for seed in range(3):
        learner = make_learner(name, sim.space, rng=seed)
        runs.append(run_regret(sim, learner, rounds=20_000, batch=500, rng=100 + seed))
    traces[name] = runs
    totals = np.array([r.total for r in runs])
    share = np.mean([r.at_optimum for r in runs])
    print(f"{name:<15} regret {totals.mean():8.1f}  at optimum {share:.0%}")
print("plot:", plot_regret(traces, "layouts_basin_regret.png", title="basin, 3 seeds"))
