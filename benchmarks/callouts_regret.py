"""Callout policies: cumulative regret on a cold-start world, and serving speed and memory.

Regret: every policy runs on the same :class:`~memberlab.callouts.simulator.CalloutWorld`
per seed (50 live callouts, new items arriving and old ones retiring throughout, delayed
clicks, batched feedback); the table shows the mean cumulative expected regret at the
last round with its standard error over seeds, and ratios to the fixed N(0,1)-prior
attribute Thompson sampler. Peers (Vowpal Wabbit ``cb_explore_adf --squarecb``,
MABWiser LinTS, bayesianbandits) run when installed.

Speed: one core (BLAS pinned to one thread), 50 eligible callouts, ~200 features;
ratios against a Beta-Bernoulli sampler and a straightforward numpy implementation of
the same probit Thompson sampler (draw all weights, score sparse rows), both measured in
the same run.

    .venv/bin/python benchmarks/callouts_regret.py                 # full: 100k rounds, 10 seeds
    .venv/bin/python benchmarks/callouts_regret.py --quick         # smoke run
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import single_thread_blas

single_thread_blas()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import deque  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from _common import (  # noqa: E402
    peak_traced_mib,
    print_banner,
    rss_peak_mib,
    time_per_call,
)
from memberlab import ConvergenceWarning  # noqa: E402
from memberlab.bayes import beta_init, beta_sample, probit  # noqa: E402
from memberlab.callouts import CalloutRecommender, Catalog, Feedback  # noqa: E402
from memberlab.callouts.policies import (  # noqa: E402
    DEFAULT_CROSSES,
    AttributeTSPolicy,
    BetaBernoulliPolicy,
    EpsilonGreedyPolicy,
    OraclePolicy,
    UniformPolicy,
)
from memberlab.callouts.simulator import CalloutWorld, SimPolicy, run_policy  # noqa: E402
from memberlab.evaluation.regret import RegretTrace, plot_regret, summarise  # noqa: E402

FIXED = "attribute TS, fixed N(0,1) prior"
DECONV = "attribute TS, deconvolved meta-prior"
NAIVE = "attribute TS, naive meta-prior"


# --------------------------------------------------------------------------- peers
def _ctx_onehot(contexts: Sequence[Mapping[str, Any]]) -> np.ndarray:
    keys = sorted({(k, str(v)) for c in contexts for k, v in c.items()})
    pos = {k: i for i, k in enumerate(keys)}
    X = np.zeros((len(contexts), len(keys)))
    for r, c in enumerate(contexts):
        for k, v in c.items():
            X[r, pos[(k, str(v))]] = 1.0
    return X


class _ArmSync:
    """Tracks which items a per-arm peer knows, to add and remove arms as the catalog moves."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def diff(self, active: list[str]) -> tuple[list[str], list[str]]:
        a = set(active)
        added = [i for i in active if i not in self.known]
        removed = sorted(self.known - a)
        self.known = a
        return added, removed


class VWPolicy:
    """Vowpal Wabbit contextual bandit over item attributes (cb_explore_adf, SquareCB)."""

    name = "VW cb_explore_adf squarecb"

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        import vowpalwabbit

        self._ws = vowpalwabbit.Workspace(
            f"--cb_explore_adf --squarecb --quiet -q sa --random_seed {seed % 2**31}"
        )
        self._rng = np.random.default_rng(seed)
        self._catalog = catalog
        self._shared = ["shared |s " + " ".join(f"{k}={v}" for k, v in c.items()) for c in contexts]
        self._item_line: dict[str, str] = {}
        self._pending: deque[tuple[int, list[str], int, float]] = deque()

    def _line(self, item: str) -> str:
        s = self._item_line.get(item)
        if s is None:
            feats = " ".join(
                f"{g}={v}".replace(" ", "_").replace("|", "_")
                for g, v in self._catalog.features(item)
            )
            s = self._item_line[item] = f"|a item={item} {feats}"
        return s

    def _example(self, code: int, active: list[str], label: tuple[int, float, float] | None) -> str:
        lines = [self._shared[code]]
        for j, item in enumerate(active):
            line = self._line(item)
            if label is not None and label[0] == j:
                line = f"0:{label[1]}:{label[2]} {line}"
            lines.append(line)
        return "\n".join(lines)

    def choose(self, ctx_codes: np.ndarray, active: list[str]) -> np.ndarray:
        out = np.empty(ctx_codes.shape[0], dtype=np.int64)
        for r, c in enumerate(ctx_codes.tolist()):
            pmf = np.asarray(self._ws.predict(self._example(c, active, None)), dtype=np.float64)
            pmf = pmf / pmf.sum()
            j = int(self._rng.choice(pmf.shape[0], p=pmf))
            out[r] = j
            self._pending.append((c, active, j, float(pmf[j])))
        return out

    def learn(
        self, ctx_codes: np.ndarray, item_ids: list[str], rewards: np.ndarray, t: int
    ) -> None:
        for r in rewards.tolist():
            c, active, j, p = self._pending.popleft()
            self._ws.learn(self._example(c, active, (j, -float(r), p)))


class MABWiserPolicy:
    """MABWiser LinTS: one linear Thompson-sampling model per item on the context."""

    name = "MABWiser LinTS (per item)"

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self._X = _ctx_onehot(contexts)
        self._seed = seed % 2**31
        self._mab: Any = None
        self._sync = _ArmSync()

    def _ensure(self, active: list[str]) -> None:
        from mabwiser.mab import MAB, LearningPolicy

        added, removed = self._sync.diff(active)
        if self._mab is None:
            self._mab = MAB(
                arms=list(active), learning_policy=LearningPolicy.LinTS(alpha=1.0), seed=self._seed
            )
            # MABWiser needs a first fit to set up its per-arm models
            self._mab.fit([active[0]], [0], self._X[:1])
            return
        for a in added:
            self._mab.add_arm(a)
        for a in removed:
            self._mab.remove_arm(a)

    def choose(self, ctx_codes: np.ndarray, active: list[str]) -> np.ndarray:
        self._ensure(active)
        arms = self._mab.predict(self._X[ctx_codes])
        arms = [arms] if isinstance(arms, str) else arms
        pos = {a: j for j, a in enumerate(active)}
        return np.array([pos[a] for a in arms], dtype=np.int64)

    def learn(
        self, ctx_codes: np.ndarray, item_ids: list[str], rewards: np.ndarray, t: int
    ) -> None:
        keep = [j for j, i in enumerate(item_ids) if i in self._sync.known]
        if keep:
            k = np.array(keep)
            self._mab.partial_fit([item_ids[j] for j in keep], rewards[k], self._X[ctx_codes[k]])


class BayesianBanditsPolicy:
    """bayesianbandits: Thompson sampling, one Bayesian linear model per item on the context."""

    name = "bayesianbandits TS (per item)"

    def start(self, catalog: Catalog, contexts: Sequence[Mapping[str, Any]], seed: int) -> None:
        self._X = _ctx_onehot(contexts)
        self._seed = seed
        self._agent: Any = None
        self._sync = _ArmSync()

    def _arm(self, item: str) -> Any:
        from bayesianbandits import Arm, NormalRegressor

        return Arm(item, learner=NormalRegressor(alpha=1.0, beta=1.0))

    def choose(self, ctx_codes: np.ndarray, active: list[str]) -> np.ndarray:
        from bayesianbandits import ContextualAgent, ThompsonSampling

        added, removed = self._sync.diff(active)
        if self._agent is None:
            self._agent = ContextualAgent(
                [self._arm(i) for i in active], ThompsonSampling(), random_seed=self._seed
            )
        else:
            for a in removed:
                self._agent.remove_arm(a)
            for a in added:
                self._agent.add_arm(self._arm(a))
        tokens = self._agent.pull(self._X[ctx_codes])
        pos = {a: j for j, a in enumerate(active)}
        return np.array([pos[a] for a in tokens], dtype=np.int64)

    def learn(
        self, ctx_codes: np.ndarray, item_ids: list[str], rewards: np.ndarray, t: int
    ) -> None:
        by: dict[str, list[int]] = {}
        for j, i in enumerate(item_ids):
            if i in self._sync.known:
                by.setdefault(i, []).append(j)
        for i, rows in by.items():
            k = np.array(rows)
            self._agent.select_for_update(i).update(self._X[ctx_codes[k]], rewards[k].astype(float))


def _peer_factories(enabled: bool) -> list[Callable[[], SimPolicy]]:
    if not enabled:
        return []
    out: list[Callable[[], SimPolicy]] = []
    for mod, cls in (
        ("vowpalwabbit", VWPolicy),
        ("mabwiser", MABWiserPolicy),
        ("bayesianbandits", BayesianBanditsPolicy),
    ):
        try:
            __import__(mod)
        except ImportError:
            print(f"  peer {mod}: not installed, skipped")
            continue
        out.append(cls)
    return out


# --------------------------------------------------------------------------- regret
def run_regret(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n-- regret: {args.rounds:,} rounds x {args.seeds} seeds, 50 live callouts, "
        f"item lifetime {args.lifetime:,} rounds, feedback batch {args.batch}, "
        f"attribution window 500 rounds --"
    )
    peers = _peer_factories(not args.no_peers)
    results: dict[str, list[RegretTrace]] = {}
    for seed in range(args.seeds):
        world = CalloutWorld(n_rounds=args.rounds, item_lifetime=args.lifetime, rng=seed)
        policies: list[SimPolicy] = [
            UniformPolicy(),
            EpsilonGreedyPolicy(epsilon=0.05),
            BetaBernoulliPolicy(),
            AttributeTSPolicy(),
            AttributeTSPolicy(meta_prior="naive"),
            AttributeTSPolicy(meta_prior="deconvolved"),
            OraclePolicy(world),
            *[f() for f in peers],
        ]
        for pol in policies:
            tr = run_policy(world, pol, batch_size=args.batch, rng=1000 + seed)
            results.setdefault(pol.name, []).append(tr)
        line = ", ".join(f"{k.split(',')[0][:14]}={v[-1].total:.0f}" for k, v in results.items())
        print(f"  seed {seed}: {line}", flush=True)
    summaries = summarise(results)
    base = summaries[FIXED].mean
    print(f"\n{'policy':<40}{'cum. regret':>14}{'+- SE':>9}{'vs N(0,1) TS':>14}{'s/run':>8}")
    summary: dict[str, Any] = {}
    for name, s in summaries.items():
        ratio = s.mean / base
        print(f"{name:<40}{s.mean:>14.1f}{s.se:>9.1f}{ratio:>14.3f}{s.seconds:>8.1f}")
        summary[name] = {
            "mean": s.mean,
            "se": s.se,
            "ratio_vs_fixed": ratio,
            "seconds": s.seconds,
            "curve_rounds": s.rounds.tolist(),
            "curve_mean": s.curve_mean.tolist(),
        }
    d, f = summary[DECONV], summary[FIXED]
    apart = d["mean"] + 2 * d["se"] < f["mean"] - 2 * f["se"]
    print(
        f"\ncold start: deconvolved meta-prior / N(0,1) prior = {d['mean'] / f['mean']:.3f} "
        f"(target <= 0.7); two-SE bands apart: {apart}"
    )
    n = summary[NAIVE]
    print(f"cold start: naive meta-prior / N(0,1) prior = {n['mean'] / f['mean']:.3f}")
    others = [k for k in summary if k not in (DECONV, "oracle")]
    beaten = [k for k in others if summary[k]["mean"] > d["mean"]]
    missed = sorted(set(others) - set(beaten))
    print(
        f"deconvolved meta-prior TS beats {len(beaten)}/{len(others)} other policies"
        + ("" if not missed else f"; not: {missed}")
    )
    if args.plot:
        plot_regret(summaries, args.plot, title="Callouts, cold-start world")
        print(f"regret curves: {args.plot}")
    return summary


# --------------------------------------------------------------------------- speed
def run_speed(args: argparse.Namespace) -> dict[str, float]:
    world = CalloutWorld(n_rounds=1000, rng=0)
    recs = world.item_records()[:50]
    catalog = Catalog.from_records(recs)
    rec = CalloutRecommender(catalog=catalog, crosses=DEFAULT_CROSSES, rng=0)
    ctxs = world.contexts
    rng = np.random.default_rng(0)
    warm = [
        Feedback(ctxs[int(c)], recs[int(i)]["item_id"], float(rng.random() < 0.03))
        for c, i in zip(rng.integers(0, len(ctxs), 5000), rng.integers(0, 50, 5000), strict=True)
    ]
    rec.update(warm)
    for c in ctxs:
        rec.decide(c)
    nf = rec.state.n_features
    print(
        f"\n-- speed: 50 eligible callouts, {nf} features, {len(ctxs)} distinct contexts, "
        "one thread --"
    )
    it = iter(range(1 << 62))

    def ctx() -> dict[str, Any]:
        return ctxs[next(it) % len(ctxs)]

    out: dict[str, float] = {}
    t_dec = time_per_call(lambda: rec.decide(ctx(), with_propensity=False))
    t_prop = time_per_call(lambda: rec.decide(ctx()))
    batch_ctx = [ctxs[i % len(ctxs)] for i in range(1000)]
    t_batch = time_per_call(lambda: rec.decide_batch(batch_ctx), per_call=1000)
    t_batch1 = time_per_call(lambda: rec.decide_batch(ctxs[0], n=1000), per_call=1000)
    fbs = [warm[i % len(warm)] for i in range(1000)]
    fb_it = iter(range(1 << 62))
    t_upd = time_per_call(lambda: rec.update([fbs[next(fb_it) % 1000]]))
    t_updb = time_per_call(lambda: rec.update(fbs), per_call=1000)

    # baselines measured here: Beta-Bernoulli TS, and a plain numpy probit TS
    bstate = beta_init(50)
    brng = np.random.default_rng(1)
    t_beta = time_per_call(lambda: int(np.argmax(beta_sample(bstate, brng))))
    rows_of = {i: rec.rows(c, catalog.active_ids()) for i, c in enumerate(ctxs)}
    state = rec.state
    nrng = np.random.default_rng(2)
    n_it = iter(range(1 << 62))

    def naive_decide() -> int:
        rows = rows_of[next(n_it) % len(ctxs)]
        return int(np.argmax(rows.dot(probit.sample_weights(state, nrng))))

    def naive_prop() -> float:
        rows = rows_of[next(n_it) % len(ctxs)]
        w = probit.sample_weights(state, nrng, 100)
        top = np.argmax(rows.dot(w), axis=1)
        return float(np.mean(top == top[0]))

    t_naive = time_per_call(naive_decide)
    t_naive_p = time_per_call(naive_prop)
    r0 = rows_of[0]
    one_idx = r0.indices[r0.indptr[0] : r0.indptr[1]]
    t_naive_u = time_per_call(lambda: probit.update_one(state, one_idx, None, 1))

    def workload() -> None:
        r = CalloutRecommender(catalog=catalog, crosses=DEFAULT_CROSSES, rng=1)
        r.update(warm)
        for i in range(20_000):
            r.decide(ctxs[i % len(ctxs)])
        for i in range(5):
            r.update(warm[i * 1000 : (i + 1) * 1000])
        r.decide_batch(batch_ctx)

    peak = peak_traced_mib(workload)
    rss_serving = _serving_rss_mib()
    rows = [
        ("decide, no propensity", t_dec, t_beta, ">= 100,000/s"),
        ("decide + propensity (100 draws)", t_prop, t_naive_p, ">= 10,000/s"),
        ("single update", t_upd, t_naive_u, ">= 50,000/s"),
        ("batch update (1,000), per row", t_updb, t_naive_u, ""),
        ("decide_batch, 1,000 mixed contexts", t_batch, t_beta, ">= 500,000/s"),
        ("decide_batch, 1,000 same context", t_batch1, t_beta, ""),
    ]
    print(f"{'operation':<38}{'us/op':>9}{'ops/s':>12}{'baseline us':>13}{'speed-up':>10}  target")
    for name, t, b, target in rows:
        print(
            f"{name:<38}{t.micros:>9.2f}{t.per_second:>12,.0f}{b.micros:>13.2f}"
            f"{b.seconds_per_call / t.seconds_per_call:>10.1f}  {target}"
        )
        out[name] = t.per_second
    print(
        "baselines: decide and batch rows vs Beta-Bernoulli TS over 50 arms (one draw); "
        "propensity vs plain numpy probit TS (100 weight draws, sparse scoring); updates vs "
        "probit.update_one"
    )
    print(
        f"plain numpy probit TS, one decision: {t_naive.micros:.2f} us "
        f"({t_naive.seconds_per_call / t_dec.seconds_per_call:.1f}x slower than decide)"
    )
    print(
        f"peak traced memory of a 20k-decision workload: {peak:.1f} MiB (target < 100 MiB); "
        f"process peak RSS so far: {rss_peak_mib():.0f} MiB (includes numpy, scipy, pandas)"
    )
    print(
        f"peak RSS of a fresh process that imports memberlab.callouts and serves 50,000 "
        f"decisions with propensities and 20 batch updates: {rss_serving:.0f} MiB "
        "(target < 100 MiB)"
    )
    out["peak_mib"] = peak
    out["serving_rss_mib"] = rss_serving
    return out


_SERVING = """
import resource
import numpy as np
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.callouts.simulator import CalloutWorld
w = CalloutWorld(n_rounds=1000, rng=0)
recs = w.item_records()[:50]
rec = CalloutRecommender(catalog=Catalog.from_records(recs),
                         crosses=[("page", "benefit"), ("member", "benefit")], rng=0)
rng = np.random.default_rng(0)
fb = [Feedback(w.contexts[int(c)], recs[int(i)]["item_id"], float(rng.random() < 0.03))
      for c, i in zip(rng.integers(0, 48, 5000), rng.integers(0, 50, 5000))]
rec.update(fb)
for i in range(50_000):
    rec.decide(w.contexts[i % 48])
for i in range(20):
    rec.update(fb[i * 250:(i + 1) * 250])
rec.decide_batch([w.contexts[i % 48] for i in range(1000)])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _serving_rss_mib() -> float:
    import subprocess

    res = subprocess.run(
        [sys.executable, "-c", _SERVING], capture_output=True, text=True, check=True, timeout=600
    )
    return float(res.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500, help="feedback batch (rounds)")
    ap.add_argument("--lifetime", type=int, default=5_000, help="rounds each callout is live")
    ap.add_argument("--quick", action="store_true", help="10,000 rounds, 2 seeds")
    ap.add_argument("--no-peers", action="store_true", help="skip VW, MABWiser, bayesianbandits")
    ap.add_argument("--skip-regret", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--plot", default="callouts_regret.png", help="regret-curve PNG ('' for none)")
    ap.add_argument("--json", default="", help="write the numbers to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seeds = 10_000, 2
    warnings.simplefilter("ignore", ConvergenceWarning)
    print_banner(
        "memberlab callouts benchmark",
        ("memberlab", "numpy", "scipy", "vowpalwabbit", "mabwiser", "bayesianbandits"),
    )
    t0 = time.perf_counter()
    res: dict[str, Any] = {}
    if not args.skip_speed:
        res["speed"] = run_speed(args)
    if not args.skip_regret:
        res["regret"] = run_regret(args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
