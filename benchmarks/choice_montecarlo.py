"""Monte Carlo of Iskhakov, Lee, Rust, Schjerning and Seo (2016) for memberlab's NFXP.

The design of Su and Judd (2012) as re-run in Iskhakov et al., "Comment on 'Constrained
Optimization Approaches to Estimation of Structural Models'", Econometrica 84(1), 2016:
Rust's bus model on 175 mileage cells, true RC = 11.7257, theta11 = 2.45569 (cost
``0.001 theta11 x``), increment probabilities theta3 = (0.0937, 0.4475, 0.4459, 0.0127,
0.0002), 50 buses x 120 months per data set, discount factors 0.975 ... 0.9999, 250
data sets per discount factor and 5 starting values per data set. Each run is
:func:`memberlab.choice.fit_rust` (Rust's NFXP: frequencies, partial likelihood, then
the full likelihood in RC, theta11 and theta3), the inner solver the
contraction/Newton-Kantorovich polyalgorithm on the relative value function.

Printed per discount factor: the share of runs that converged, the share of data sets
whose five runs reached the same maximum (log-likelihoods within 1e-6), bias and RMSE
of RC, theta11 and theta3 over all runs, and wall and CPU seconds per estimation.
With ``--econirl N`` (and econirl installed, ``pip install memberlab[bench]``) econirl's
NFXP runs on the first N data sets of the discount factors in ``--econirl-betas`` in the
same run (one run per data set from econirl's own starting values; partial likelihood,
transitions fixed at the same frequency estimates; econirl takes 1-2 minutes per
estimation here, hence the subset).

Run::

    python benchmarks/choice_montecarlo.py                    # 250 x 5 x 6, 2 workers
    python benchmarks/choice_montecarlo.py --quick            # 10 x 2 x 6
    python benchmarks/choice_montecarlo.py --replications 50 --starts 5 --workers 2 \\
        --econirl 2 --econirl-betas 0.975,0.9999
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_banner, single_thread_blas

single_thread_blas()

import numpy as np  # noqa: E402

TRUE_RC = 11.7257
TRUE_THETA11 = 2.45569
TRUE_THETA3 = (0.0937, 0.4475, 0.4459, 0.0127, 0.0002)
BETAS = (0.975, 0.985, 0.995, 0.999, 0.9995, 0.9999)
# Five starting values (RC, theta11), from far below to far above the truth; theta3
# starts at the frequencies, as in Rust's NFXP (and Iskhakov et al.'s runs).
STARTS = ((2.0, 0.5), (6.0, 1.5), (10.0, 3.0), (15.0, 5.0), (20.0, 8.0))
N_BUSES = 50
N_PERIODS = 120
N_BINS = 175


def _seeds(seed: int, beta_index: int, n: int) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence([seed, beta_index]).spawn(n)


def _dataset(beta: float, seq: np.random.SeedSequence) -> Any:
    from memberlab.choice import simulate_rust

    return simulate_rust(
        rc=TRUE_RC,
        theta11=TRUE_THETA11,
        theta3=TRUE_THETA3,
        discount=beta,
        n_buses=N_BUSES,
        n_periods=N_PERIODS,
        n_bins=N_BINS,
        rng=seq,
    )


def _run_dataset(args: tuple[float, int, np.random.SeedSequence, int]) -> list[dict[str, Any]]:
    """Fit one simulated data set from each starting value (runs in a worker)."""
    from memberlab.choice import fit_rust

    beta, rep, seq, n_starts = args
    data = _dataset(beta, seq)
    out = []
    for k, start in enumerate(STARTS[:n_starts]):
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = fit_rust(data, discount=beta, start=start)
                th3 = np.zeros(len(TRUE_THETA3))
                th3[: len(res.theta3)] = res.theta3
                rec = {
                    "rc": res.rc,
                    "theta11": res.theta11,
                    "theta3": th3.tolist(),
                    "loglik": res.loglik,
                    "converged": res.converged,
                    "stop": res.stop,
                    "n_iter": res.n_iter,
                    "error": "",
                }
            except Exception as exc:  # a failed run is a non-converged run, reported
                rec = {
                    "rc": float("nan"),
                    "theta11": float("nan"),
                    "theta3": [float("nan")] * len(TRUE_THETA3),
                    "loglik": float("nan"),
                    "converged": False,
                    "stop": "error",
                    "n_iter": 0,
                    "error": f"{type(exc).__name__}: {exc}",
                }
        rec.update(
            beta=beta,
            rep=rep,
            start=k,
            wall=time.perf_counter() - t0,
            cpu=time.process_time() - c0,
            replacements=int(data.decisions.sum()),
        )
        out.append(rec)
    return out


def _econirl_run(args: tuple[float, int, np.random.SeedSequence]) -> dict[str, Any]:
    """econirl's NFXP on the same data set, transitions fixed at the frequencies."""
    import pandas as pd
    from econirl.datasets import rust_bus_reward_spec
    from econirl.estimators import NFXP

    from memberlab.choice._rust import _increment_transitions

    beta, rep, seq = args
    data = _dataset(beta, seq)
    frame = pd.DataFrame(
        {
            "bus": np.repeat(np.arange(N_BUSES), N_PERIODS),
            "state": data.states,
            "replaced": data.decisions,
        }
    )
    counts = np.bincount(data.increments).astype(float)
    freq = counts / counts.sum()
    trans, _ = _increment_transitions(N_BINS, len(freq))(freq[:-1])
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = NFXP(
                n_states=N_BINS,
                discount=beta,
                utility=rust_bus_reward_spec(N_BINS),
                se_method="asymptotic",
            )
            model.fit(frame, state="state", action="replaced", id="bus", transitions=trans[0])
            rec = {
                "rc": float(model.params_["replacement_cost"]),
                "theta11": 1000.0 * float(model.params_["operating_cost"]),
                "converged": bool(model.converged_),
                "error": "",
            }
        except Exception as exc:
            rec = {
                "rc": float("nan"),
                "theta11": float("nan"),
                "converged": False,
                "error": f"{type(exc).__name__}: {exc}",
            }
    rec.update(beta=beta, rep=rep, wall=time.perf_counter() - t0, cpu=time.process_time() - c0)
    return rec


def _bias_rmse(x: np.ndarray, truth: float | np.ndarray) -> tuple[Any, Any]:
    err = x - truth
    return np.mean(err, axis=0), np.sqrt(np.mean(err**2, axis=0))


def _table(records: list[dict[str, Any]], n_starts: int) -> list[str]:
    lines = [
        f"{'beta':>7} {'runs':>5} {'conv%':>6} {'same%':>6} {'floor':>5} "
        f"{'RC bias':>8} {'RC RMSE':>8} {'th11 bias':>9} {'th11 RMSE':>9} "
        f"{'th3 |bias|':>10} {'th3 RMSE':>9} {'s/est':>6} {'cpu s':>6} {'iter':>5}"
    ]
    for beta in sorted({r["beta"] for r in records}):
        rs = [r for r in records if r["beta"] == beta]
        conv = [r for r in rs if r["converged"]]
        by_rep: dict[int, list[float]] = {}
        for r in rs:
            by_rep.setdefault(r["rep"], []).append(r["loglik"] if r["converged"] else np.nan)
        same = np.mean(
            [np.ptp(v) < 1e-6 if np.all(np.isfinite(v)) else False for v in by_rep.values()]
        )
        rc = np.array([r["rc"] for r in conv])
        th = np.array([r["theta11"] for r in conv])
        th3 = np.array([r["theta3"] for r in conv])
        b_rc, e_rc = _bias_rmse(rc, TRUE_RC)
        b_th, e_th = _bias_rmse(th, TRUE_THETA11)
        b3, e3 = _bias_rmse(th3[:, :4], np.array(TRUE_THETA3[:4]))
        lines.append(
            f"{beta:>7} {len(rs):>5} {100 * len(conv) / len(rs):>6.1f} {100 * same:>6.1f} "
            f"{sum(r['stop'] == 'floor' for r in rs):>5} "
            f"{b_rc:>8.4f} {e_rc:>8.4f} {b_th:>9.4f} {e_th:>9.4f} "
            f"{np.max(np.abs(b3)):>10.5f} {np.max(e3):>9.5f} "
            f"{np.mean([r['wall'] for r in rs]):>6.3f} {np.mean([r['cpu'] for r in rs]):>6.3f} "
            f"{np.mean([r['n_iter'] for r in rs]):>5.1f}"
        )
    return lines


def _econirl_table(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'beta':>7} {'runs':>5} {'conv%':>6} {'RC bias':>8} {'RC RMSE':>8} "
        f"{'th11 bias':>9} {'th11 RMSE':>9} {'s/est':>7} {'cpu s':>7}"
    ]
    for beta in sorted({r["beta"] for r in records}):
        rs = [r for r in records if r["beta"] == beta]
        conv = [r for r in rs if r["converged"] and np.isfinite(r["rc"])]
        rc = np.array([r["rc"] for r in conv]) if conv else np.array([np.nan])
        th = np.array([r["theta11"] for r in conv]) if conv else np.array([np.nan])
        b_rc, e_rc = _bias_rmse(rc, TRUE_RC)
        b_th, e_th = _bias_rmse(th, TRUE_THETA11)
        lines.append(
            f"{beta:>7} {len(rs):>5} {100 * len(conv) / len(rs):>6.1f} {b_rc:>8.4f} "
            f"{e_rc:>8.4f} {b_th:>9.4f} {e_th:>9.4f} "
            f"{np.mean([r['wall'] for r in rs]):>7.1f} {np.mean([r['cpu'] for r in rs]):>7.1f}"
        )
    return lines


def _print_results(records: list[dict[str, Any]], econ: list[dict[str, Any]]) -> None:
    print()
    print("memberlab fit_rust (full likelihood; bias and RMSE over converged runs; th3")
    print("columns: largest |bias| and RMSE over theta3[0..3]; same% = data sets whose runs")
    print("reached one maximum; floor = converged at the likelihood's rounding floor)")
    n_starts = 1 + max(r["start"] for r in records)
    for line in _table(records, n_starts):
        print("  " + line)
    print(f"  theta3 per cell over converged runs, bias / RMSE (truth {TRUE_THETA3[:4]}):")
    for beta in sorted({r["beta"] for r in records}):
        th3 = np.array([r["theta3"] for r in records if r["beta"] == beta and r["converged"]])
        b3, e3 = _bias_rmse(th3[:, :4], np.array(TRUE_THETA3[:4]))
        cells = "  ".join(f"{b:+.5f} / {e:.5f}" for b, e in zip(b3, e3, strict=True))
        print(f"  {beta:>7}  {cells}")
    bad = [r for r in records if r["error"] or not r["converged"]]
    print(f"  non-converged runs: {len(bad)} of {len(records)}")
    for r in bad[:10]:
        print(f"    beta={r['beta']} rep={r['rep']} start={r['start']} {r['stop']} {r['error']}")
    if not econ:
        return
    print()
    print("econirl NFXP on the same data sets (one run each from econirl's starting values;")
    print("partial likelihood, transitions fixed at the frequencies)")
    for line in _econirl_table(econ):
        print("  " + line)
    mine = {(r["beta"], r["rep"]): r for r in records if r["start"] == 0}
    print("  per data set, memberlab (first start) vs econirl:")
    for r in econ:
        m = mine.get((r["beta"], r["rep"]))
        if m is None:
            continue
        print(
            f"    beta={r['beta']} rep={r['rep']}: RC {m['rc']:.4f} vs {r['rc']:.4f}, theta11 "
            f"{m['theta11']:.4f} vs {r['theta11']:.4f}, wall {m['wall']:.2f} s vs "
            f"{r['wall']:.1f} s, cpu {m['cpu']:.2f} s vs {r['cpu']:.1f} s {r['error']}"
        )


def _read(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records of a --jsonl file; of a stopped run, the data sets complete at every beta."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    mine = [r for r in rows if r["kind"] == "memberlab"]
    n_starts = 1 + max(r["start"] for r in mine)
    betas = sorted({r["beta"] for r in mine})
    count: dict[tuple[float, int], int] = {}
    for r in mine:
        count[(r["beta"], r["rep"])] = count.get((r["beta"], r["rep"]), 0) + 1
    reps = {k[1] for k in count}
    done = {i for i in reps if all(count.get((b, i), 0) == n_starts for b in betas)}
    kept = [r for r in mine if r["rep"] in done]
    print(
        f"{path}: {len(mine)} runs; {len(done)} data set(s) x {n_starts} start(s) complete "
        f"for every beta in {betas}: {len(kept)} runs tabulated"
    )
    return kept, [r for r in rows if r["kind"] == "econirl"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 data sets, 2 starts per beta.")
    ap.add_argument("--replications", type=int, default=None, help="Data sets per beta.")
    ap.add_argument("--starts", type=int, default=None, help="Starting values per set (1-5).")
    ap.add_argument("--betas", default=",".join(map(str, BETAS)), help="Discount factors.")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=2016)
    ap.add_argument("--econirl", type=int, default=0, help="Data sets per beta for econirl.")
    ap.add_argument("--econirl-betas", default="0.975,0.9999")
    ap.add_argument(
        "--jsonl", type=Path, default=None, help="Append every run to this file as it ends."
    )
    ap.add_argument(
        "--summarise", type=Path, default=None, help="Print the tables of a --jsonl file."
    )
    args = ap.parse_args(argv)
    if args.summarise is not None:
        _print_results(*_read(args.summarise))
        return 0
    reps = args.replications or (10 if args.quick else 250)
    n_starts = args.starts or (2 if args.quick else 5)
    if not 1 <= n_starts <= len(STARTS):
        ap.error(f"--starts == {n_starts}, must be in 1..{len(STARTS)}.")
    if reps < 1:
        ap.error(f"--replications == {reps}, must be >= 1.")
    betas = [float(b) for b in args.betas.split(",")]
    print_banner(
        "Iskhakov et al. (2016) Monte Carlo: memberlab NFXP",
        ("memberlab", "numpy", "scipy", "econirl"),
    )
    print(f"  command: python benchmarks/choice_montecarlo.py {' '.join(argv or sys.argv[1:])}")
    print(f"  design: {N_BINS} cells, RC={TRUE_RC}, theta11={TRUE_THETA11}, theta3={TRUE_THETA3}")
    print(
        f"  {N_BUSES} buses x {N_PERIODS} months, {reps} data sets x {n_starts} starts per "
        f"beta, starts (RC, theta11) = {STARTS[:n_starts]}, workers={args.workers}"
    )
    seeds = {beta: _seeds(args.seed, i, reps) for i, beta in enumerate(BETAS) if beta in betas}
    # replication-major, so that a run stopped early has every beta equally far along
    tasks = [(beta, rep, seeds[beta][rep], n_starts) for rep in range(reps) for beta in seeds]
    sink = args.jsonl.open("a") if args.jsonl else None

    def keep(rec: dict[str, Any], kind: str) -> None:
        rec["kind"] = kind
        if sink:
            sink.write(json.dumps(rec) + "\n")
            sink.flush()

    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    try:
        results = pool.map(_run_dataset, tasks) if pool else map(_run_dataset, tasks)
        for out in results:
            for rec in out:
                keep(rec, "memberlab")
            records.extend(out)
        wall = time.perf_counter() - t0
        econ: list[dict[str, Any]] = []
        if args.econirl > 0:
            try:
                import econirl  # noqa: F401
            except ImportError:
                print("\neconirl: not installed (pip install memberlab[bench]); skipped")
            else:
                ebetas = [float(b) for b in args.econirl_betas.split(",")]
                etasks = [
                    (beta, rep, seeds[beta][rep])
                    for beta in ebetas
                    if beta in seeds
                    for rep in range(min(args.econirl, reps))
                ]
                results_e = pool.map(_econirl_run, etasks) if pool else map(_econirl_run, etasks)
                for rec in results_e:
                    keep(rec, "econirl")
                    econ.append(rec)
    finally:
        if pool:
            pool.shutdown()
        if sink:
            sink.close()
    _print_results(records, econ)
    print(f"\n  memberlab: {len(records)} estimations, {wall:.0f} s wall, {args.workers} workers")
    if econ:
        print(f"  econirl: {len(econ)} estimations, {time.perf_counter() - t0 - wall:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
