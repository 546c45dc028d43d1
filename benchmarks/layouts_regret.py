"""Layout bandits: regret on simulators with ground truth, and the latency of one decision.

Sections (run all by default):

- ``basin``: 5 slots x 4 variants (1,024 layouts) whose best layout is reachable only
  through interactions. Policies: MVT2 (pairwise model, hill climbing), MVT2 with exact
  argmax, MVT1 (main effects only), a Beta-Bernoulli arm per layout, a bandit per slot.
  Then MVT2 with hill climbing against exact argmax on more basin shapes
  (``--basin-shapes``, default 5x6 and 6x5), with the regret ratio and its standard error.
- ``6x6``: a random pairwise model on 6 slots x 6 variants (46,656 layouts).
- ``speed``: one decision (Thompson draw, hill climbing, Monte Carlo propensity) on 8
  slots x 8 variants (16.8 million layouts, all 28 pairs interacting, 5 context fields),
  against a naive hill climb that rescores whole layouts, and exact enumeration on a
  smaller space, in the same run.

Posteriors are updated every ``--batch`` rounds (sequential probit ADF over the batch).

Usage::

    .venv/bin/python benchmarks/layouts_regret.py                # full: 10 seeds, 60,000 rounds
    .venv/bin/python benchmarks/layouts_regret.py --quick        # 3 seeds, 6,000 rounds
    .venv/bin/python benchmarks/layouts_regret.py --sections speed
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from _common import machine_lines
from memberlab.evaluation.regret import RegretTrace, plot_regret, summarise
from memberlab.layouts import LayoutPolicy, LayoutSpace
from memberlab.layouts.regret import make_learner, run_regret
from memberlab.layouts.search import dense_pairs, layout_scores, random_layouts, unary_table
from memberlab.layouts.simulate import LayoutSimulator, basin_model, random_pairwise_model


def machine() -> str:
    return "; ".join(machine_lines(("memberlab", "numpy", "scipy")))


def regret_section(
    title: str,
    make_sim: object,
    policies: Sequence[str],
    *,
    rounds: int,
    seeds: int,
    batch: int,
    restarts: int,
    plot: Path | None,
) -> dict[str, list[RegretTrace]]:
    traces: dict[str, list[RegretTrace]] = {p: [] for p in policies}
    t0 = time.perf_counter()
    for seed in range(seeds):
        sim_seq, pol_seq, env_seq = np.random.SeedSequence([20260, seed]).spawn(3)
        sim: LayoutSimulator = make_sim(sim_seq)  # type: ignore[operator]
        pol_state, env_state = pol_seq.generate_state(4), env_seq.generate_state(4)
        for name in policies:
            # common random numbers: every policy of a seed starts from the same generators
            learner = make_learner(
                name, sim.space, n_restarts=restarts, rng=np.random.SeedSequence(pol_state)
            )
            traces[name].append(
                run_regret(
                    sim, learner, rounds=rounds, batch=batch, rng=np.random.default_rng(env_state)
                )
            )
        print(f"  [{title}] seed {seed + 1}/{seeds} done ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip
    print(f"\n{title}: {rounds:,} rounds, {seeds} seeds, batch {batch}, restarts {restarts}")
    print(f"{'policy':<16}{'cum. regret':>13}{'s.e.':>9}{'at optimum':>12}{'s/run':>8}")
    summaries = summarise(traces)
    for name, s in summaries.items():
        se = s.se if s.n_runs > 1 else float("nan")
        share = s.at_optimum or 0.0
        print(f"{name:<16}{s.mean:>13,.1f}{se:>9,.1f}{share:>12.0%}{s.seconds:>8.1f}")
    if plot is not None:
        print(f"plot: {plot_regret(summaries, plot, title=title)}")
    return traces


def _mean(traces: dict[str, list[RegretTrace]], name: str) -> float:
    return float(np.mean([t.total for t in traces[name]]))


def _share(traces: dict[str, list[RegretTrace]], name: str) -> float:
    return float(np.mean([t.at_optimum for t in traces[name]]))


def _ratio(traces: dict[str, list[RegretTrace]], num: str, den: str) -> tuple[float, float]:
    """Ratio of mean regrets and its standard error (delta method, paired by seed)."""
    x = np.array([t.total for t in traces[num]])
    y = np.array([t.total for t in traces[den]])
    r = float(x.mean() / y.mean())
    se = float((x - r * y).std(ddof=1) / np.sqrt(x.size) / y.mean()) if x.size > 1 else np.nan
    return r, se


def naive_decide(policy: LayoutPolicy, context: dict[str, str], seed: int) -> np.ndarray:
    """The same Thompson draws and restarts, but a hill climb that rescores whole layouts.

    Every step scores all ``sum(sizes)`` single-slot neighbours of every restart from
    scratch (O(n_slots + n_pairs) each) instead of reading an incrementally kept field.
    """
    known, unknown = policy._blocks(context)
    serve_seq, prop_seq = np.random.SeedSequence(seed).spawn(2)
    parts = [
        (np.random.Generator(np.random.SFC64(serve_seq)), 1, False),
        (np.random.Generator(np.random.SFC64(prop_seq)), policy.propensity_draws, True),
    ]
    main, pair, starts = policy._sample_tables(parts, known, unknown)
    assert starts is not None
    tables = policy._tables
    R = policy.n_restarts
    k = np.repeat(np.arange(main.shape[0]), R)
    unary = unary_table(tables, main).reshape(main.shape[0], -1)
    pf = dense_pairs(tables, pair).reshape(-1, unary.shape[1])
    L = starts.copy()
    D = policy.space.n_slots
    sizes = policy.space.sizes
    score = layout_scores(tables, unary, pf, k, L)
    for _ in range(policy.max_steps_):
        best_s, best_L = score.copy(), L.copy()
        for d in range(D):
            for v in range(int(sizes[d])):
                cand = L.copy()
                cand[:, d] = v
                s = layout_scores(tables, unary, pf, k, cand)
                better = s > best_s + 1e-10
                best_s[better], best_L[better] = s[better], cand[better]
        if np.array_equal(best_L, L):
            break
        L, score = best_L, best_s
    best = np.argmax(score.reshape(-1, R), axis=1)
    return L.reshape(-1, R, D)[np.arange(best.shape[0]), best]


def _latency(fn: object, n: int) -> np.ndarray:
    """Wall-clock milliseconds of ``fn(i)`` for i in range(n)."""
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)  # type: ignore[operator]
        out[i] = time.perf_counter() - t0
    return out * 1e3


def _cpu_ms(fn: object, n: int) -> np.ndarray:
    """CPU milliseconds of this process for ``fn(i)`` (insensitive to other processes)."""
    out = np.empty(n)
    for i in range(n):
        t0 = time.process_time()
        fn(i)  # type: ignore[operator]
        out[i] = time.process_time() - t0
    return out * 1e3


def speed_section(*, decisions: int, draws: int, restarts: int) -> None:
    slots = {f"slot{d}": [f"v{v}" for v in range(8)] for d in range(8)}
    fields = [f"ctx{i}" for i in range(5)]
    space = LayoutSpace(slots, context=fields)
    policy = LayoutPolicy(space, propensity_draws=draws, n_restarts=restarts, rng=0)
    rng = np.random.default_rng(0)
    values = [["a", "b", "c"] for _ in fields]

    def context(i: int) -> dict[str, str]:
        return {f: values[j][(i + j) % 3] for j, f in enumerate(fields)}

    # a trained posterior: 20,000 random layouts with rewards, in 10 batches
    for b in range(10):
        L = random_layouts(space, 2000, rng)
        y = (rng.random(2000) < 0.05 + 0.1 * (L[:, 0] == 3)).astype(np.int64)
        ctxs = [context(b * 2000 + i) for i in range(2000)]
        policy.update(
            [(c, space.from_indices(row), int(r)) for c, row, r in zip(ctxs, L, y, strict=True)]
        )
    print(
        f"\nspeed: one decision on 8 slots x 8 variants ({space.n_layouts:,} layouts, "
        f"{space.n_pairs} pairs, 5 context fields, {policy.state_.n_features:,} features); "
        f"{restarts} restarts, {draws} propensity draws, max {policy.max_steps_} steps"
    )
    for i in range(50):  # warm-up (allocations, incumbent caches)
        policy.decide(context(i))
    lat = _latency(lambda i: policy.decide(context(i)), decisions)
    cpu = _cpu_ms(lambda i: policy.decide(context(i)), decisions)
    print(
        f"  incremental hill climb, propensity included: p50 {np.percentile(lat, 50):.2f} ms, "
        f"p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.2f} ms over {decisions:,} "
        f"(process CPU time p50 {np.percentile(cpu, 50):.2f} ms, p99 "
        f"{np.percentile(cpu, 99):.2f} ms; load average {os.getloadavg()[0]:.2f})"
    )
    for k in (16, 32):
        if k < draws:
            policy.propensity_draws = k
            lk = _latency(lambda i: policy.decide(context(i)), decisions)
            print(
                f"  ... with {k} propensity draws: p50 {np.percentile(lk, 50):.2f} ms, "
                f"p99 {np.percentile(lk, 99):.2f} ms"
            )
    policy.propensity_draws = draws
    policy.pair_starts = 0
    l0 = _latency(lambda i: policy.decide(context(i)), decisions)
    c0 = _cpu_ms(lambda i: policy.decide(context(i)), decisions)
    print(
        f"  ... without the pair-seeded greedy starts (pair_starts=0): p50 "
        f"{np.percentile(l0, 50):.2f} ms, p99 {np.percentile(l0, 99):.2f} ms (CPU p50 "
        f"{np.percentile(c0, 50):.2f} ms): the starts cost "
        f"{np.percentile(cpu, 50) / np.percentile(c0, 50):.2f}x in CPU"
    )
    policy.pair_starts = 1
    d = policy.decide(context(1))
    print(f"  example: propensity {d.propensity:.3f}, version {d.policy_version}")
    n_naive = max(20, decisions // 20)
    naive = _latency(lambda i: naive_decide(policy, context(i), i), n_naive)
    print(
        f"  naive hill climb (rescoring whole layouts), same draws: "
        f"p50 {np.percentile(naive, 50):.2f} ms, p99 {np.percentile(naive, 99):.2f} ms "
        f"over {n_naive}; ratio naive/incremental p50 "
        f"{np.percentile(naive, 50) / np.percentile(lat, 50):.1f}x"
    )
    small = LayoutSpace({f"slot{d}": [f"v{v}" for v in range(8)] for d in range(4)})
    exact = LayoutPolicy(small, propensity_draws=draws, exact_max_layouts=5000, rng=0)
    exact.update_indices(random_layouts(small, 2000, rng), rng.integers(0, 2, 2000))
    ex = _latency(lambda i: exact.decide(), max(50, decisions // 4))
    print(
        f"  exact enumeration on 4 slots x 8 variants (4,096 layouts), same draws: "
        f"p50 {np.percentile(ex, 50):.2f} ms, p99 {np.percentile(ex, 99):.2f} ms; "
        f"ratio to the 16.8M-layout hill climb p50 "
        f"{np.percentile(ex, 50) / np.percentile(lat, 50):.2f}x"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=60_000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="3 seeds, 6,000 rounds")
    ap.add_argument("--sections", default="basin,6x6,speed")
    ap.add_argument("--decisions", type=int, default=2000, help="timed decisions (speed)")
    ap.add_argument("--draws", type=int, default=64, help="propensity draws (speed)")
    ap.add_argument("--plots", type=Path, default=None, help="directory for regret PNGs")
    ap.add_argument(
        "--basin-shapes",
        default="5x6,6x5",
        help="more basin shapes DxN for the hill climb / exact comparison ('' for none)",
    )
    args = ap.parse_args(argv)
    try:
        args.basin_shapes = [
            tuple(int(x) for x in sh.lower().split("x"))
            for sh in args.basin_shapes.split(",")
            if sh.strip()
        ]
    except ValueError:
        ap.error(f"--basin-shapes == {args.basin_shapes!r}, must be like 5x6,6x5")
    for sh in args.basin_shapes:
        if len(sh) != 2 or sh[0] < 3 or sh[1] < 2 or sh[1] ** sh[0] > 200_000:
            ap.error(f"--basin-shapes has {sh}: need D >= 3, N >= 2 and N^D <= 200,000")
    if args.quick:
        args.rounds, args.seeds = 6000, 3
    for name in ("rounds", "seeds", "batch", "restarts", "decisions", "draws"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} == {getattr(args, name)}, must be >= 1")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for s in sections:
        if s not in ("basin", "6x6", "speed"):
            ap.error(f"--sections names {s!r}; allowed: basin, 6x6, speed")
    print(machine())
    print(" ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]))
    common = {
        "rounds": args.rounds,
        "seeds": args.seeds,
        "batch": args.batch,
        "restarts": args.restarts,
    }
    t0 = time.perf_counter()
    if "basin" in sections:
        tr = regret_section(
            "basin (5 slots x 4 variants)",
            lambda s: basin_model(n_slots=5, n_variants=4, rng=s),
            ["mvt2", "mvt2-exact", "mvt1", "arm-per-layout", "per-slot"],
            plot=args.plots / "layouts_basin.png" if args.plots else None,
            **common,
        )
        others = ["mvt1", "arm-per-layout", "per-slot"]
        r, se = _ratio(tr, "mvt2", "mvt2-exact")
        print(
            f"checks: MVT2 lowest regret: {all(_mean(tr, 'mvt2') < _mean(tr, o) for o in others)}"
            f"; MVT2 largest share at optimum: "
            f"{all(_share(tr, 'mvt2') >= _share(tr, o) for o in others)}"
            f"; MVT2 hill climb / exact regret = {r:.3f} +- {se:.3f} (must be <= 1.05)"
        )
        ratios = [("5x4", r, se)]
        for shape in args.basin_shapes:
            D, N = shape
            tr = regret_section(
                f"basin ({D} slots x {N} variants)",
                lambda s, D=D, N=N: basin_model(n_slots=D, n_variants=N, rng=s),
                ["mvt2", "mvt2-exact"],
                plot=args.plots / f"layouts_basin_{D}x{N}.png" if args.plots else None,
                **common,
            )
            ratios.append((f"{D}x{N}", *_ratio(tr, "mvt2", "mvt2-exact")))
        print("\nhill climb / exact regret by basin shape (must be <= 1.05):")
        for name, r, se in ratios:
            print(f"  {name}: {r:.3f} +- {se:.3f}  {'ok' if r <= 1.05 else 'FAILS'}")
    if "6x6" in sections:
        tr = regret_section(
            "pairwise (6 slots x 6 variants)",
            lambda s: random_pairwise_model(n_slots=6, n_variants=6, rng=s),
            ["mvt2", "mvt1", "arm-per-layout", "per-slot"],
            plot=args.plots / "layouts_6x6.png" if args.plots else None,
            **common,
        )
        ratio = _mean(tr, "mvt2") / _mean(tr, "arm-per-layout")
        print(f"checks: MVT2 / arm-per-layout regret = {ratio:.3f} (must be <= 0.5)")
    if "speed" in sections:
        speed_section(decisions=args.decisions, draws=args.draws, restarts=args.restarts)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
