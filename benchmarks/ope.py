"""Off-policy estimates with a 1,000-resample bootstrap on 10^7 logged decisions, against a
straightforward pandas implementation in the same run; export of 10^6 decisions to
Parquet with its peak memory; and the coverage sweep of the estimators' intervals.

    python benchmarks/ope.py                 # the full run (10^7 decisions, 10^6 export)
    python benchmarks/ope.py --quick         # 10^5 decisions, 10^4 exported
    python benchmarks/ope.py --coverage      # only the coverage sweep (1,000 logs)
    python benchmarks/ope.py --coverage --n 20000   # the sweep at another log size
    python benchmarks/ope.py --readout       # the holdout readout's memory, 10^6 decisions
    python benchmarks/ope.py --candidates    # logging a 1,000-item candidate list

The world: 20 contexts x 8 actions with click rates from seed 0, a softmax logging
policy, a target that puts 0.7 on the best action; the reward model is the cell means of
the log (a legitimate DM model at this size). The pandas baseline computes the same
estimates with DataFrame column arithmetic and bootstraps by ``DataFrame.sample(n,
replace=True)``; it is timed on a few resamples and its per-resample time is compared.
Memory: tracemalloc peaks (numpy buffers included) in this process; the export runs in
child processes so their peak RSS is their own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_traced_mib, print_banner, rss_peak_mib, single_thread_blas

single_thread_blas()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from memberlab.evaluation import UntrustworthyEstimateWarning, estimate  # noqa: E402

NAMES = ("ipw", "snipw", "dm", "dr", "sndr")


def world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    rates = g.uniform(0.01, 0.2, (20, 8))
    logit = g.normal(0, 1, (20, 8))
    logging_p = np.exp(logit) / np.exp(logit).sum(1, keepdims=True)
    target = np.full((20, 8), 0.3 / 7)
    target[np.arange(20), rates.argmax(1)] = 0.7
    return rates, logging_p, target


def simulate(n: int, seed: int) -> dict[str, np.ndarray]:
    rates, logging_p, target = world()
    g = np.random.default_rng(seed)
    x = g.integers(0, 20, n)
    a = (logging_p[x].cumsum(1) < g.random(n)[:, None]).sum(1)
    a = np.minimum(a, 7)
    r = (g.random(n) < rates[x, a]).astype(np.float64)
    # reward model: cell means, cross-fitted on two folds (even and odd rows)
    cell = x * 8 + a
    fold = np.arange(n) % 2
    q = np.empty(n)
    v = np.empty(n)
    for f in (0, 1):
        tr = fold != f
        s = np.bincount(cell[tr], weights=r[tr], minlength=160)
        c = np.maximum(np.bincount(cell[tr], minlength=160), 1)
        qtab = (s / c).reshape(20, 8)
        te = ~tr
        q[te] = qtab[x[te], a[te]]
        v[te] = (target * qtab).sum(1)[x[te]]
    return {"r": r, "p": logging_p[x, a], "pi": target[x, a], "q": q, "v": v}


def ours(d: dict[str, np.ndarray], n_boot: int) -> list[dict[str, float]]:
    out = []
    for name in NAMES:
        res = estimate(name, d["r"], d["p"], d["pi"], d["q"], d["v"],
                       interval="bootstrap", n_bootstrap=n_boot, rng=1, warn=False)  # fmt: skip
        out.append({"estimator": res.estimator, "value": res.value, "lower": res.lower,
                    "upper": res.upper})  # fmt: skip
    return out


def pandas_values(df: pd.DataFrame) -> dict[str, float]:
    w = df["pi"] / df["p"]
    resid = df["r"] - df["q"]
    return {
        "ipw": float((w * df["r"]).mean()),
        "snipw": float((w * df["r"]).sum() / w.sum()),
        "dm": float(df["v"].mean()),
        "dr": float((df["v"] + w * resid).mean()),
        "sndr": float(df["v"].mean() + (w * resid).sum() / w.sum()),
    }


def pandas_bootstrap(df: pd.DataFrame, n_boot: int) -> list[dict[str, float]]:
    return [pandas_values(df.sample(len(df), replace=True, random_state=b)) for b in range(n_boot)]


# ---------------------------------------------------------------------- export


def _fill_store(url: str, n: int, n_units: int = 0) -> None:
    """``n`` closed callouts decisions; with ``n_units``, each names one of that many
    units (10% none) and carries its holdout arm (30% of units), as under a holdout."""
    import sqlalchemy as sa

    from memberlab.store import Store
    from memberlab.store import _schema as s

    store = Store(url)
    g = np.random.default_rng(0)
    now = time.time()
    items = [f"item{j}" for j in range(8)]
    with store._tx() as conn:
        conn.execute(
            sa.insert(s.items),
            [{"kind": "callouts", "item_id": it, "attributes": {"benefit": f"b{j % 3}"},
              "active": True, "created_at": now - 1e6, "updated_at": now - 1e6}
             for j, it in enumerate(items)],
        )  # fmt: skip
    step = 50_000
    for s0 in range(0, n, step):
        m = min(step, n - s0)
        pages = g.choice(["home", "video", "music", "photos"], m)
        served = g.integers(0, 8, m)
        units = np.where(g.random(m) < 0.1, -1, g.integers(0, max(n_units, 1), m))
        drows, irows = [], []
        for k in range(m):
            did = f"d{s0 + k:09d}"
            ts = now - n + s0 + k
            drows.append({"decision_id": did, "kind": "callouts", "space": "",
                          "context": {"page": str(pages[k]), "member": bool(k % 2)},
                          "served": [items[served[k]]], "policy_version": 1, "seed": k,
                          "ts": ts, "ts_client": True, "created_at": now})  # fmt: skip
            if n_units:
                u = int(units[k])
                drows[-1] |= {"unit_id": f"u{u}" if u >= 0 else None,
                              "assignment": "holdout" if (u % 10) < 3 else "policy"}  # fmt: skip
            irows.append({"decision_id": did, "item_id": items[served[k]], "kind": "callouts",
                          "space": "", "propensity": 0.125, "ts": ts, "deadline": ts + 60,
                          "status": 1, "reward": float(k % 17 == 0), "closed_at": ts + 60,
                          "policy_version": 1})  # fmt: skip
        with store._tx() as conn:
            conn.execute(sa.insert(s.decisions), drows)
            conn.execute(sa.insert(s.impressions), irows)
    store.close()


def _vm_hwm_mib() -> float:
    """Peak RSS of this process's address space (VmHWM; ru_maxrss is inherited across
    fork and exec on Linux, so a child's ru_maxrss can show its parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_peak_mib()


def _export_child(url: str, out: str, naive: bool, q: mp.Queue) -> None:
    import tracemalloc

    from memberlab.store import Store
    from memberlab.store._export import export_parquet

    store = Store(url, migrate=False)
    base = _vm_hwm_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    c0 = time.process_time()
    if naive:
        # the straightforward way: every row in memory, then one DataFrame, then Parquet
        rows = []
        from memberlab.store._export import iter_export

        for batch in iter_export(store, kind="callouts", batch_size=10**9):
            rows.extend(batch)
        frame = pd.DataFrame(rows).drop(columns=["_ctx"])
        frame.to_parquet(out)
        n = len(frame)
    else:
        n = export_parquet(store, out, kind="callouts", batch_size=5_000)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    q.put({"rows": n, "seconds": dt, "cpu": cpu, "traced_peak_mib": peak / 2**20,
           "rss_peak_mib": _vm_hwm_mib(), "rss_before_mib": base})  # fmt: skip


def bench_export(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        _fill_store(url, n)
        print(
            f"filled a SQLite store with {n:,} closed decisions in {time.perf_counter() - t0:.1f} s"
        )
        ctx = mp.get_context("spawn")
        for naive in (False, True):
            q: mp.Queue = ctx.Queue()
            p = ctx.Process(target=_export_child, args=(url, f"{tmp}/out{naive}.parquet", naive, q))
            p.start()
            res = q.get()
            p.join()
            label = "all rows in memory + to_parquet" if naive else "export_parquet (batches of 5k)"
            size = os.path.getsize(f"{tmp}/out{naive}.parquet") / 2**20
            print(
                f"  {label:<34} {res['rows']:>9,} rows  {res['seconds']:7.1f} s "
                f"(CPU {res['cpu']:.1f} s)  traced peak {res['traced_peak_mib']:8.1f} MiB  "
                f"RSS peak {res['rss_peak_mib']:7.1f} MiB (at start {res['rss_before_mib']:.0f})"
                f"  file {size:.1f} MiB"
            )


# ---------------------------------------------------------------------- holdout readout


def _readout_child(url: str, streamed: bool, q: mp.Queue) -> None:
    import tracemalloc

    from memberlab.evaluation.experiment import holdout_report
    from memberlab.service._experiment import experiment_frame, experiment_report
    from memberlab.store import Store

    store = Store(url, migrate=False)
    base = _vm_hwm_mib()
    tracemalloc.start()
    t0 = time.perf_counter()
    if streamed:
        out = experiment_report(store, holdout_fraction=0.3)
    else:  # every decision in memory, then the report (the readout before it streamed)
        frame, pending = experiment_frame(store)
        out = holdout_report(frame, holdout_fraction=0.3, pending=pending)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    q.put({"seconds": dt, "traced_peak_mib": peak / 2**20, "rss_peak_mib": _vm_hwm_mib(),
           "rss_before_mib": base, "lift": out["lift"], "arms": out["arms"],
           "points": len(out["series"])})  # fmt: skip


def bench_readout(n: int, n_units: int) -> None:
    """The holdout readout from a store of ``n`` decisions: streamed into per-unit sums
    against every decision in memory, each in its own process; the numbers must agree."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/readout.db"
        t0 = time.perf_counter()
        _fill_store(url, n, n_units)
        print(f"filled a SQLite store with {n:,} closed decisions of {n_units:,} units "
              f"(10% without a unit id) in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        ctx = mp.get_context("spawn")
        res = {}
        for streamed in (False, True):
            q: mp.Queue = ctx.Queue()
            proc = ctx.Process(target=_readout_child, args=(url, streamed, q))
            proc.start()
            res[streamed] = r = q.get()
            proc.join()
            label = "streamed per-unit sums" if streamed else "every decision in memory"
            print(f"  {label:<26} {r['seconds']:7.1f} s  traced peak "
                  f"{r['traced_peak_mib']:8.1f} MiB  RSS peak {r['rss_peak_mib']:7.1f} MiB "
                  f"(at start {r['rss_before_mib']:.0f})  {r['points']} series points")  # fmt: skip
        a, b = res[False]["lift"], res[True]["lift"]
        assert res[False]["arms"] == res[True]["arms"]
        assert all(
            abs(a[k] - b[k]) <= 1e-12 * max(1.0, abs(a[k])) for k in ("absolute", "lower")
        ), (a, b)
        print(f"  same readout: lift {b['absolute']:+.6f} [{b['lower']:+.6f}, {b['upper']:+.6f}]")


# ---------------------------------------------------------------------- candidate lists


def bench_candidates(n_items: int, n_decisions: int) -> None:
    """What a decision without an explicit candidate list logs, for a catalogue of
    ``n_items``: the full list every time (before) against a full copy once per 1,000
    decisions and a reference otherwise; CPU per decision and bytes per row."""
    from memberlab.callouts import CalloutRecommender, Catalog
    from memberlab.service._experiment import candidates_committed, decision_candidates

    def logged() -> object:  # what the route logs, and tells once the decision committed
        out = decision_candidates(rec, None)
        candidates_committed(out)
        return out

    records = [{"item_id": f"item-{j:05d}", "benefit": f"b{j % 7}"} for j in range(n_items)]
    rec = CalloutRecommender(catalog=Catalog.from_records(records))
    rows = {}
    ways = (
        ("full list every decision", lambda: rec.catalog.active_ids()),
        ("reference (full once per 1,000)", logged),
    )
    for label, fn in ways:
        t0 = time.perf_counter()
        size = 0
        for _ in range(n_decisions):
            size += len(json.dumps(fn()))
        dt = time.perf_counter() - t0
        rows[label] = (dt / n_decisions * 1e6, size / n_decisions)
        print(f"  {label:<32} {rows[label][0]:8.1f} us per decision (list + JSON)  "
              f"{rows[label][1]:9.1f} bytes per row")  # fmt: skip
    (t_old, b_old), (t_new, b_new) = rows.values()
    print(f"  ratio: {t_old / t_new:.0f}x less CPU, {b_old / b_new:.0f}x fewer bytes per row "
          f"({n_items:,} items, {n_decisions:,} decisions)")  # fmt: skip


# ---------------------------------------------------------------------- coverage sweep


def coverage(reps: int, n: int, n_boot_logs: int) -> None:
    """Share of ``reps`` logs (seeds 10000..) whose 90% interval covers the truth: the
    normal interval on every log, the percentile and studentized bootstraps (500
    resamples) on the first ``n_boot_logs``, misses split by side, and how often the
    weight warning fired."""
    rates, _, target = world()
    truth = float(np.mean((target * rates).sum(1)))
    methods = ("normal", "bootstrap", "studentized")
    hits = {m: {e: [0, 0, 0] for e in NAMES} for m in methods}  # covered, low, high
    warned = dict.fromkeys(NAMES, 0)
    for s in range(reps):
        d = simulate(n, 10_000 + s)
        for e in NAMES:
            for m in methods if s < n_boot_logs else ("normal",):
                res = estimate(e, d["r"], d["p"], d["pi"], d["q"], d["v"], level=0.9,
                               interval=m, n_bootstrap=500, rng=s, warn=False)  # fmt: skip
                h = hits[m][e]
                h[0] += res.lower <= truth <= res.upper
                h[1] += res.upper < truth
                h[2] += res.lower > truth
                if m == "normal":
                    warned[e] += res.warning is not None
    print(f"coverage of 90% intervals, {reps} logs of {n:,} decisions (seeds 10000..), "
          f"truth {truth:.5f}; bootstraps on the first {n_boot_logs} logs, 500 resamples; "
          f"(misses below / above the truth):")  # fmt: skip
    for e in NAMES:
        cells = []
        for m in methods:
            k = reps if m == "normal" else n_boot_logs
            c, lo, hi = hits[m][e]
            cells.append(f"{m} {c / k:.3f} ({lo}/{hi})")
        print(f"  {e:<6} " + "   ".join(cells) + f"   warned {warned[e]}/{reps}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--coverage", action="store_true", help="only the coverage sweep")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--baseline-resamples", type=int, default=3)
    ap.add_argument("--export-n", type=int, default=None, help="0 skips the export part")
    ap.add_argument(
        "--readout",
        action="store_true",
        help="only the holdout readout's memory (10^6 decisions; --n to change)",
    )
    ap.add_argument(
        "--candidates",
        action="store_true",
        help="only the cost of logging a 1,000-item candidate list",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore", UntrustworthyEstimateWarning)
    print_banner("off-policy evaluation at scale", ("memberlab", "numpy", "pandas", "pyarrow"))
    if args.readout:
        n = args.n or (10**4 if args.quick else 10**6)
        bench_readout(n, max(100, n // 10))
        return
    if args.candidates:
        bench_candidates(1000, 2_000 if args.quick else 20_000)
        return
    if args.coverage:
        reps = 100 if args.quick else 1000
        coverage(reps, args.n or 5_000, reps // 2)
        return
    n = args.n or (10**5 if args.quick else 10**7)
    t_ours, t_base = bench_estimates(n, args.bootstrap, args.baseline_resamples)
    n_export = args.export_n if args.export_n is not None else (10**4 if args.quick else 10**6)
    if n_export > 0:
        bench_export(n_export)
    print(json.dumps({"n": n, "seconds_ours": t_ours, "seconds_pandas": t_base}))


def bench_estimates(n: int, n_boot: int, nb: int) -> tuple[float, float]:
    d = simulate(n, 0)
    print(f"{n:,} logged decisions, {len(NAMES)} estimators, {n_boot} bootstrap resamples")
    t0 = time.perf_counter()
    res: list = []
    peak = peak_traced_mib(lambda: res.extend(ours(d, n_boot)))
    t_ours = time.perf_counter() - t0
    df = pd.DataFrame(d)
    t1 = time.perf_counter()
    base_vals = pandas_values(df)
    base_peak = peak_traced_mib(lambda: pandas_bootstrap(df, nb))
    t_base = time.perf_counter() - t1
    per_resample_base = t_base / nb
    per_resample_ours = t_ours / (len(NAMES) * n_boot)
    for r in res:
        key = {"IPS": "ipw", "SNIPS": "snipw", "DM": "dm", "DR": "dr", "SNDR": "sndr"}[
            r["estimator"]
        ]
        assert abs(r["value"] - base_vals[key]) < 1e-9 * max(1.0, abs(base_vals[key])), (
            r,
            base_vals,
        )
        print(f"  {r['estimator']:<6} {r['value']:.6f} [{r['lower']:.6f}, {r['upper']:.6f}]"
              f"  (pandas value {base_vals[key]:.6f})")  # fmt: skip
    print(
        f"memberlab: {t_ours:.1f} s for {len(NAMES)} estimates x {n_boot} resamples "
        f"({1e3 * per_resample_ours:.2f} ms per estimator-resample), traced peak {peak:.0f} MiB"
    )
    print(f"pandas   : {t_base:.1f} s for {nb} resamples of all {len(NAMES)} estimators "
          f"({1e3 * per_resample_base / len(NAMES):.0f} ms per estimator-resample), "
          f"traced peak {base_peak:.0f} MiB")  # fmt: skip
    print(f"ratio (pandas / memberlab, per estimator-resample): "
          f"{(per_resample_base / len(NAMES)) / per_resample_ours:.0f}x; "
          f"pandas extrapolated to {n_boot} resamples: "
          f"{per_resample_base * n_boot / 60:.0f} min")  # fmt: skip
    print(f"process RSS peak so far {rss_peak_mib():.0f} MiB")
    return t_ours, t_base


if __name__ == "__main__":
    main()
