"""Offline jobs on 1 and 2 workers, per backend, and each backend's per-task overhead.

For every job (bootstrap of a choice model, counterfactual simulation sharded by member,
OPE with bootstrap over Parquet files, batch scoring, sharded prior refit) this runs
the job serially (the baseline) and on local processes and on a local Ray instance with
1 and then 2 workers, checks that every run gives the serial numbers, and prints the
wall times and speed-ups. Worker pools are started and warmed (imports done) before a
job is timed; their start-up is reported apart. Then the per-task overhead of each
backend: a map of a no-op over many tasks, with and without a 1 MB shared payload.
Finally the per-unit costs the capacity estimate in docs/scale.md is built from.

The machine is shared: the 1-minute load average is printed next to every timing, and
each timing is the minimum over ``--repeat`` runs.

    PYTHONPATH=src python benchmarks/scale.py            # full run (~10 min idle)
    PYTHONPATH=src python benchmarks/scale.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import single_thread_blas

single_thread_blas()  # one BLAS thread per worker: 2 workers on 2 cores, not 2 x 2

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from _common import machine_lines  # noqa: E402
from memberlab.callouts import CalloutRecommender, Catalog, Feedback  # noqa: E402
from memberlab.choice import (  # noqa: E402
    CCP,
    MembershipEnv,
    Panel,
    TabularPQR,
    bootstrap_replicates,
)
from memberlab.jobs import (  # noqa: E402
    Executor,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    ope_bootstrap,
    refit_priors_sharded,
    score_members,
    simulate_counterfactual,
    simulate_member_values,
)

STATE = ["status", "months_left", "delivery", "video", "tier"]


def load() -> float:
    return os.getloadavg()[0]


def noop(x: Any) -> Any:
    return x


def noop_shared(shared: Any, x: Any) -> Any:
    return x


# ------------------------------------------------------------------ workloads
def make_panel(n_members: int) -> Panel:
    frame = MembershipEnv().simulate(n_members, 12, rng=0)
    return Panel.from_frame(
        frame, id="member", time="month", state=STATE, action="action",
        actions=["none", "monthly", "annual"], feasible="feasible",
    )  # fmt: skip


def make_recommender() -> CalloutRecommender:
    benefits = ["video", "music", "delivery", "reading", "photos", "grocery", "deals"]
    items = [
        {"item_id": f"i{j}", "benefit": benefits[j % 7], "brand": f"b{j % 5}"} for j in range(30)
    ]
    return CalloutRecommender(
        catalog=Catalog.from_records(items), crosses=[("page", "benefit")], rng=0
    )


def make_log(n: int, seed: int) -> list[Feedback]:
    rng = np.random.default_rng(seed)
    eff = rng.normal(0, 0.5, 30)
    pages = np.array(["video", "music", "home", "deals"])
    items = rng.integers(0, 30, n)
    page = pages[rng.integers(0, 4, n)]
    y = rng.random(n) < 1 / (1 + np.exp(-(-2.0 + eff[items])))
    return [
        Feedback({"page": str(p)}, f"i{i}", float(c))
        for p, i, c in zip(page, items, y, strict=True)
    ]


def write_ope_logs(d: Path, n_files: int, rows: int) -> list[str]:
    rng = np.random.default_rng(0)
    rates = np.array([0.2, 0.1, 0.05, 0.05])
    target = np.array([0.7, 0.1, 0.1, 0.1])
    out = []
    for k in range(n_files):
        a = rng.integers(0, 4, rows)
        pd.DataFrame(
            {
                "reward": (rng.random(rows) < rates[a]).astype(float),
                "propensity": np.full(rows, 0.25),
                "target_propensity": target[a],
                "reward_hat": rates[a],
                "value_hat": np.full(rows, float(target @ rates)),
            }
        ).to_parquet(d / f"log-{k}.parquet", index=False)
        out.append(str(d / f"log-{k}.parquet"))
    return out


def build_jobs(
    quick: bool, tmp: Path
) -> dict[str, tuple[Callable[[Executor], Any], int, float, str]]:
    """Each job as ``run(executor) -> comparable result``, its number of tasks, and its
    work in units (for the per-unit cost) with the unit's name."""
    s = 0.25 if quick else 1.0
    panel = make_panel(int(12_000 * s))
    ccp = CCP(anchor="none", discount=0.97)
    n_boot = 16
    fitted = TabularPQR(anchor="none", discount=0.97, smoothing=0.5).fit(panel)
    n_cf, shard = int(400_000 * s), int(50_000 * s)
    ope_files = write_ope_logs(tmp, 4, int(60_000 * s))
    rec = make_recommender()
    rec.update(make_log(3000, 0))
    members = pd.DataFrame(
        {
            "member_id": np.arange(int(2000 * s)),
            "page": np.resize(["video", "music", "home", "deals"], int(2000 * s)),
        }
    )
    members.to_parquet(tmp / "members.parquet", index=False, row_group_size=int(250 * s))
    log = make_log(int(24_000 * s), 1)
    shards = [log[i::8] for i in range(8)]

    def boot(ex: Executor) -> Any:
        reps = bootstrap_replicates(ccp.fit, panel, n_boot=n_boot, rng=1, executor=ex)
        return np.array([r.params for r in reps])

    def cf(ex: Executor) -> Any:
        out = simulate_counterfactual(
            fitted, {"monthly": 0.3}, n_members=n_cf, shard_size=shard, months=12, rng=2,
            prices={"monthly": 1.5, "annual": 14.0}, executor=ex,
        )  # fmt: skip
        return out.shares[["baseline", "counterfactual"]].to_numpy()

    def ope(ex: Executor) -> Any:
        t = ope_bootstrap(
            ope_files, n_boot=50, rng=3, logged_reward_hat="reward_hat",
            target_value_hat="value_hat", executor=ex,
        )  # fmt: skip
        return t[["value", "lower", "upper"]].to_numpy()

    counter = iter(range(10**6))

    def score(ex: Executor) -> Any:
        out = tmp / f"scores-{next(counter)}"
        done = score_members(rec, tmp / "members.parquet", out, top_k=5, executor=ex)
        return pd.concat([pd.read_parquet(p) for p in done["path"]])["mean"].to_numpy()

    def refit(ex: Executor) -> Any:
        r = refit_priors_sharded(rec, shards, executor=ex)
        assert r.posterior is not None
        return np.concatenate([[p.var for p in r.priors.values()], r.posterior.mean])

    n_mv, mv_shard = int(400 * s), int(100 * s)
    n_pairs = int(np.isfinite(fitted.rewards).sum())

    def value(ex: Executor) -> Any:
        mv = simulate_member_values(
            fitted, prices={"monthly": 1.5, "annual": 14.0}, horizon=12, n_members=n_mv,
            shard_size=mv_shard, rng=4, executor=ex,
        )  # fmt: skip
        return np.nan_to_num(mv.values)

    n_groups = -(-len(members) // int(250 * s))
    return {
        f"member value ({n_mv} members per state and plan, 12 months)": (
            value,
            -(-n_mv // mv_shard),
            n_mv * n_pairs * 12,
            "member-month per state and plan",
        ),
        f"bootstrap (CCP, {n_boot} replicates, {panel.n_members} members)": (
            boot,
            n_boot,
            n_boot * panel.n_obs,
            "replicate x member-month",
        ),
        f"counterfactual ({n_cf} members, 12 months)": (
            cf,
            -(-n_cf // shard),
            n_cf * 12,
            "member-month (both scenarios)",
        ),
        f"OPE (4 files x {int(60_000 * s)} decisions, 50 replicates)": (
            ope,
            4,
            4 * int(60_000 * s) * 51,
            "decision x replicate",
        ),
        f"scoring ({len(members)} members x 30 callouts)": (
            score,
            n_groups,
            len(members) * 30,
            "member x callout",
        ),
        f"prior refit + replay ({len(log)} impressions, 8 shards)": (
            refit,
            16,
            len(log),
            "impression (shadow + replay)",
        ),
    }


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any, float, float]:
    """Minimum wall time over ``repeat`` runs, the result, the load, and the minimum
    CPU time of this process (the whole job's CPU when it runs serially)."""
    best, cpu, out, ld = float("inf"), float("inf"), None, load()
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return best, out, ld, cpu


def overhead(ex: Executor, n_tasks: int) -> tuple[float, float]:
    """Seconds per task of a no-op map, without and with a 1 MB shared payload."""
    ex.map(noop, range(8))  # warm
    t0 = time.perf_counter()
    ex.map(noop, range(n_tasks))
    plain = (time.perf_counter() - t0) / n_tasks
    payload = np.zeros(1 << 17)  # 1 MiB
    t0 = time.perf_counter()
    ex.map(noop_shared, range(n_tasks), shared=payload)
    shared = (time.perf_counter() - t0) / n_tasks
    return plain, shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small workloads (smoke run)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per timing (minimum kept)")
    ap.add_argument("--backends", nargs="*", default=["processes", "ray"], help="besides serial")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument(
        "--only", nargs="*", default=None, help="run only the jobs whose name starts so"
    )
    args = ap.parse_args()
    for line in machine_lines(("memberlab", "numpy", "scipy", "pandas", "pyarrow", "ray")):
        print(line)
    print(f"uptime load average (1 min) at start: {load():.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="memberlab-scale-"))
    jobs = build_jobs(args.quick, tmp)
    if args.only:
        jobs = {k: v for k, v in jobs.items() if any(k.startswith(o) for o in args.only)}
    makers: dict[str, Callable[[int], Executor]] = {
        "processes": lambda w: ProcessExecutor(workers=w),
        "ray": lambda w: RayExecutor(workers=w),
    }
    backends = [(b, makers[b]) for b in args.backends]
    results: dict[str, Any] = {"jobs": {}, "overhead": {}, "startup": {}}
    ref: dict[str, Any] = {}
    serial = SerialExecutor()
    for name, (run, n_tasks, units, unit) in jobs.items():
        run(serial)  # warm caches and imports, as the pools are warmed
        t, out, ld, cpu = timed(lambda run=run: run(serial), args.repeat)
        ref[name] = out
        results["jobs"][name] = {
            "tasks": n_tasks,
            "serial": t,
            "serial_cpu": cpu,
            "serial_load": ld,
            "units": units,
            "unit": unit,
        }
        print(f"{name}: serial {t:.2f}s (load {ld:.1f})", flush=True)
    n_over = 100 if args.quick else 400
    for bname, make in backends:
        for w in (1, 2):
            t0 = time.perf_counter()
            ex = make(w)
            ex.start()
            ex.map(noop, range(2 * w))
            results["startup"][f"{bname}/{w}"] = time.perf_counter() - t0
            try:
                for name, (run, *_) in jobs.items():
                    run(ex)  # warm: workers import the job's modules
                    t, out, ld, _ = timed(lambda run=run, ex=ex: run(ex), args.repeat)
                    bits = bool(np.array_equal(out, ref[name]))
                    close = bool(np.allclose(out, ref[name], rtol=1e-12, atol=0))
                    same = "bit-identical" if bits else ("within 1e-12" if close else "DIFFERENT")
                    results["jobs"][name][f"{bname}/{w}"] = t
                    results["jobs"][name][f"{bname}/{w}_load"] = ld
                    results["jobs"][name][f"{bname}/{w}_same"] = same
                    if not bits:
                        rel = np.max(
                            np.abs(out - ref[name]) / np.maximum(np.abs(ref[name]), 1e-300)
                        )
                        results["jobs"][name][f"{bname}/{w}_maxrel"] = float(rel)
                        same += f" (max relative difference {rel:.1e})"
                    print(f"{name}: {bname} x{w} {t:.2f}s (load {ld:.1f}) {same}", flush=True)
                results["overhead"][f"{bname}/{w}"] = overhead(ex, n_over)
            finally:
                ex.close()
    results["overhead"]["serial/1"] = overhead(serial, n_over)
    print()
    print(
        "| job | tasks | serial s | "
        + " | ".join(f"{b} x{w} s" for b, _ in backends for w in (1, 2))
        + " | "
        + " | ".join(f"{b} speed-up 2 vs 1" for b, _ in backends)
        + " |"
    )
    print("|" + " --- |" * (3 + 3 * len(backends)))
    for name, r in results["jobs"].items():
        cells = [name, str(r["tasks"]), f"{r['serial']:.2f}"]
        cells += [f"{r[f'{b}/{w}']:.2f}" for b, _ in backends for w in (1, 2)]
        cells += [f"{r[f'{b}/1'] / r[f'{b}/2']:.2f}x" for b, _ in backends]
        print("| " + " | ".join(cells) + " |")
    print()
    print("| backend | workers | start-up s | per task ms | per task with 1 MiB shared ms |")
    print("| --- | --- | --- | --- | --- |")
    for key, (plain, shared) in results["overhead"].items():
        b, w = key.split("/")
        st = results["startup"].get(key, 0.0)
        print(f"| {b} | {w} | {st:.2f} | {1e3 * plain:.3f} | {1e3 * shared:.3f} |")
    print()
    print("| job | unit | serial wall per unit (us) | serial CPU per unit (us) | same as serial |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results["jobs"].items():
        sames = sorted(
            {str(r[f"{b}/{w}_same"]).split(" (")[0] for b, _ in backends for w in (1, 2)}
        )
        wall, cpu = 1e6 * r["serial"] / r["units"], 1e6 * r["serial_cpu"] / r["units"]
        print(f"| {name} | {r['unit']} | {wall:.3f} | {cpu:.3f} | {', '.join(sames) or '-'} |")
    print(f"\nuptime load average (1 min) at end: {load():.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
