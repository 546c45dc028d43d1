"""Every job gives the same numbers serially, on two local processes and on a two-CPU Ray.

The serial run is the reference; the other backends must match it to the bit (the task
split and the combination order do not depend on the backend), except where stated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memberlab.bayes import GroupPrior
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.choice import (
    CCP,
    ChoiceResults,
    MembershipEnv,
    Panel,
    TabularPQR,
    bootstrap,
    bootstrap_replicates,
    counterfactual,
)
from memberlab.evaluation import estimate_all
from memberlab.jobs import (
    Executor,
    SerialExecutor,
    ope_bootstrap,
    refit_priors_sharded,
    score_members,
    simulate_counterfactual,
)

STATE = ["status", "months_left", "delivery", "video", "tier"]


@pytest.fixture(scope="module")
def panel() -> Panel:
    frame = MembershipEnv().simulate(400, 12, rng=0)
    return Panel.from_frame(
        frame, id="member", time="month", state=STATE, action="action",
        actions=["none", "monthly", "annual"], feasible="feasible",
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted(panel: Panel) -> ChoiceResults:
    return TabularPQR(anchor="none", discount=0.97, smoothing=0.5).fit(panel)


# ------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_identical_on_every_backend(panel: Panel, executor: Executor) -> None:
    est = CCP(anchor="none", discount=0.97)
    serial = bootstrap(est.fit, panel, n_boot=3, rng=5)  # the library's serial form
    got = bootstrap_replicates(est.fit, panel, n_boot=3, rng=5, executor=executor)
    assert len(got) == 3
    for a, b in zip(serial, got, strict=True):
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.params, b.params)
    # replicates differ from one another (they are resampled)
    assert not np.array_equal(got[0].params, got[1].params)


# -------------------------------------------------------------------- counterfactual
def test_counterfactual_is_identical_on_every_backend(
    fitted: ChoiceResults, executor: Executor
) -> None:
    kw = {"n_members": 2500, "months": 4, "shard_size": 1000, "rng": 3}
    prices = {"monthly": 1.5, "annual": 14.0}
    ref = simulate_counterfactual(fitted, {"monthly": 0.4}, prices=prices, **kw)
    got = simulate_counterfactual(fitted, {"monthly": 0.4}, prices=prices, executor=executor, **kw)
    pd.testing.assert_frame_equal(ref.shares, got.shares, check_exact=True)
    pd.testing.assert_frame_equal(ref.metrics, got.metrics, check_exact=True)
    assert len(got.shares) == 4 * 3
    np.testing.assert_allclose(got.shares.groupby("month")["counterfactual"].sum(), 1.0)
    # a higher reward of monthly raises its share
    assert got.share_at(3, "monthly") > got.share_at(3, "monthly", "baseline")


def test_one_shard_equals_the_library_counterfactual(fitted: ChoiceResults) -> None:
    seed = np.random.SeedSequence(9).spawn(1)[0]
    lib = counterfactual(
        fitted, {"annual": 0.3}, months=5, n_members=700, n_boot=1,
        prices={"monthly": 1.5}, rng=np.random.default_rng(seed),
    )  # fmt: skip
    job = simulate_counterfactual(
        fitted, {"annual": 0.3}, n_members=700, months=5, shard_size=700,
        prices={"monthly": 1.5}, rng=9,
    )  # fmt: skip
    for col in ("baseline", "counterfactual", "difference"):
        np.testing.assert_array_equal(job.shares[col], lib.shares[col])
    for col in ("revenue", "churn"):
        np.testing.assert_allclose(job.metrics[col], lib.metrics[col], rtol=1e-12, atol=1e-15)
    # the job's revenue interval is the normal one from the member-level s.d. (the
    # library's is a bootstrap percentile); on one shard it is exactly that
    sd = np.concatenate([lib.info["revenue_sd"][k] for k in ("baseline", "counterfactual")])
    half = 1.959963984540054 * sd / np.sqrt(700)
    np.testing.assert_allclose(job.metrics["revenue_upper"], lib.metrics["revenue"] + half)
    np.testing.assert_allclose(job.metrics["revenue_lower"], lib.metrics["revenue"] - half)


# ------------------------------------------------------------------------------ OPE
@pytest.fixture(scope="module")
def ope_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], float]:
    """Logs of a uniform logging policy over 4 actions; target plays action 0 w.p. 0.7.

    True click rates 0.2, 0.1, 0.05, 0.05: the target's value is
    0.7 * 0.2 + 0.1 * (0.1 + 0.05 + 0.05) = 0.16.
    """
    rng = np.random.default_rng(0)
    rates = np.array([0.2, 0.1, 0.05, 0.05])
    target = np.array([0.7, 0.1, 0.1, 0.1])
    d = tmp_path_factory.mktemp("ope")
    paths = []
    for k, n in enumerate([1500, 2500, 1000]):
        a = rng.integers(0, 4, n)
        frame = pd.DataFrame(
            {
                "reward": (rng.random(n) < rates[a]).astype(float),
                "propensity": np.full(n, 0.25),
                "target_propensity": target[a],
                "reward_hat": rates[a] + 0.01,
                "value_hat": np.full(n, float(target @ rates) + 0.01),
            }
        )
        paths.append(d / f"part-{k}.parquet")
        frame.to_parquet(paths[-1], index=False)
    return paths, float(target @ rates)


def test_ope_is_identical_on_every_backend_and_pools_exactly(
    ope_logs: tuple[list[Path], float], executor: Executor
) -> None:
    paths, truth = ope_logs
    cols = {"logged_reward_hat": "reward_hat", "target_value_hat": "value_hat"}
    ref = ope_bootstrap(paths, n_boot=30, rng=1, **cols)
    got = ope_bootstrap(paths, n_boot=30, rng=1, executor=executor, **cols)
    # not to the bit: evaluation.ope.snips sums with a BLAS dot product, whose rounding
    # can differ by an ulp between processes (measured: 2e-16 relative)
    pd.testing.assert_frame_equal(ref, got, check_exact=False, rtol=1e-13, atol=0)
    # the point estimates are the library's estimators on the concatenated logs
    whole = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    lib = estimate_all(whole, **cols).set_index("estimator")
    for row in got.itertuples():
        assert row.value == pytest.approx(lib.loc[row.estimator, "value"], rel=1e-12)
        assert row.n == 5000
    # the Poisson bootstrap's s.d. agrees with the library's analytic standard error
    # (30 replicates: the s.d. itself is known to about 13%), and the estimates are
    # within 3 of them of the truth (seed 0 logs, seed 1 bootstrap); DM is a constant
    # model here, off by 0.01 on purpose
    assert set(got["estimator"]) == {"IPS", "SNIPS", "DM", "DR"}
    for row in got[got["estimator"] != "DM"].itertuples():
        se = float(lib.loc[row.estimator, "se"])
        assert row.boot_sd == pytest.approx(se, rel=0.35), row.estimator
        assert abs(row.value - truth) < 3 * se, row.estimator
        assert row.lower < row.value < row.upper


# -------------------------------------------------------------------------- scoring
def _recommender() -> CalloutRecommender:
    items = [
        {"item_id": f"i{j}", "benefit": b, "brand": f"b{j % 3}"}
        for j, b in enumerate(["video", "music", "delivery", "video", "music", "reading"])
    ]
    rec = CalloutRecommender(
        catalog=Catalog.from_records(items), crosses=[("page", "benefit")], rng=0
    )
    rng = np.random.default_rng(1)
    log = [
        Feedback({"page": str(rng.choice(["video", "music", "home"]))}, f"i{j}",
                 float(rng.random() < (0.2 if j % 2 else 0.05)))
        for j in rng.integers(0, 6, 300)
    ]  # fmt: skip
    rec.update(log)
    return rec


def test_scoring_is_identical_on_every_backend(tmp_path: Path, executor: Executor) -> None:
    rec = _recommender()
    members = pd.DataFrame(
        {"member_id": np.arange(40), "page": np.tile(["video", "music", "home", "deals"], 10)}
    )
    src = tmp_path / "members.parquet"
    members.to_parquet(src, index=False, row_group_size=15)  # three row groups, three tasks
    ref = score_members(rec, src, tmp_path / "ref", top_k=3)
    got = score_members(rec, src, tmp_path / "got", top_k=3, executor=executor)
    assert list(ref["rows"]) == list(got["rows"]) == [45, 45, 30]
    a = pd.concat([pd.read_parquet(p) for p in ref["path"]], ignore_index=True)
    b = pd.concat([pd.read_parquet(p) for p in got["path"]], ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # each member's rows are the recommender's own click rates, best first
    direct = rec.click_rates({"page": "music"}).sort_values("mean", ascending=False)
    one = b[b["member_id"] == 1]
    assert list(one["item_id"]) == list(direct["item_id"][:3])
    np.testing.assert_array_equal(one["mean"].to_numpy(), direct["mean"].to_numpy()[:3])


# -------------------------------------------------------------------- prior refit
def _log(n: int, seed: int) -> list[Feedback]:
    rng = np.random.default_rng(seed)
    eff = {f"i{j}": e for j, e in enumerate(rng.normal(0, 0.5, 6))}
    out = []
    for _ in range(n):
        item = f"i{rng.integers(0, 6)}"
        page = str(rng.choice(["video", "music", "home"]))
        p = 1 / (1 + np.exp(-(-1.8 + eff[item])))
        out.append(Feedback({"page": page}, item, float(rng.random() < p)))
    return out


@pytest.mark.filterwarnings("ignore::memberlab.ConvergenceWarning")
def test_one_shard_refit_equals_the_recommenders_own() -> None:
    log = _log(600, 2)
    rec = _recommender()
    job = refit_priors_sharded(rec, [log], executor=SerialExecutor())
    own = rec.refit_priors(log, method="deconvolved")  # changes rec: after the job
    # priors: the same arithmetic up to the natural-parameter round trip of the messages
    assert job.priors.keys() == own.priors.keys() and job.n_rows == 600
    for g, p in own.priors.items():
        assert job.priors[g].mean == p.mean
        assert job.priors[g].var == pytest.approx(p.var, rel=1e-9), g
    assert job.features.keys() == rec.feature_index.keys()
    assert job.posterior is not None
    # replayed posterior: prior x message round trip, to round-off
    np.testing.assert_allclose(job.posterior.mean, rec.state.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(job.posterior.var, rec.state.var, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::memberlab.ConvergenceWarning")
def test_sharded_refit_is_identical_on_every_backend(tmp_path: Path, executor: Executor) -> None:
    log = _log(900, 3)
    shards: list[object] = [log[:300], log[300:600]]
    path = tmp_path / "shard3.parquet"
    pd.DataFrame(
        {
            "context": [json.dumps(dict(f.context)) for f in log[600:]],
            "item_id": [f.item_id for f in log[600:]],
            "reward": [f.reward for f in log[600:]],
        }
    ).to_parquet(path, index=False)
    shards.append(str(path))
    rec = _recommender()
    ref = refit_priors_sharded(rec, shards)
    got = refit_priors_sharded(rec, shards, executor=executor)
    assert got.priors == ref.priors and got.n_rows == 900 and got.n_shards == 3
    assert ref.posterior is not None and got.posterior is not None
    np.testing.assert_array_equal(got.posterior.mean, ref.posterior.mean)
    np.testing.assert_array_equal(got.posterior.var, ref.posterior.var)
    # three shards estimate nearly what one pass over the whole log does
    whole = refit_priors_sharded(rec, [log])
    for g, p in whole.priors.items():
        assert isinstance(p, GroupPrior)
        assert got.priors[g].var == pytest.approx(p.var, rel=0.25, abs=0.02), g


# ------------------------------------------------------------------ candidate search
def test_candidate_search_is_identical_on_every_backend(executor: Executor) -> None:
    """One task per candidate, each with its own seed: the same values on every backend."""
    from memberlab.evaluation import BanditDataset
    from memberlab.evaluation.candidates import compare_candidates

    g = np.random.default_rng(4)
    n = 600
    page = g.choice(["video", "music"], size=n)
    action = g.choice(["a", "b", "c"], size=n)
    clicks = (g.random(n) < np.where(page == "video", 0.3, 0.1)).astype(float)
    frame = pd.DataFrame(
        {"t": np.arange(n), "page": page, "action": action, "reward": clicks, "p": 1 / 3}
    )
    data = BanditDataset.from_frame(frame, propensity="p", context=["page"])
    items = [
        {"item_id": "a", "attributes": {"benefit": "video"}},
        {"item_id": "b", "attributes": {"benefit": "music"}},
        {"item_id": "c", "attributes": {"benefit": "delivery"}},
    ]
    candidates = [{"name": f"var={v}", "prior_variance": v} for v in (0.05, 1.0)]
    kw = {"items": items, "estimators": ("ipw", "snipw"), "n_draws": 20, "rng": 3}
    ref, best_ref = compare_candidates(data, candidates, **kw)
    got, best = compare_candidates(data, candidates, executor=executor, **kw)
    assert [r.name for r in got] == ["var=0.05", "var=1.0"] and best.name == best_ref.name
    for a, b in zip(ref, got, strict=True):
        assert a.report.best("snipw").value == b.report.best("snipw").value
        assert a.report.best("ipw").value == b.report.best("ipw").value


# ------------------------------------------------------------------ member value
def test_member_value_simulation_is_identical_on_every_backend(
    fitted: ChoiceResults, executor: Executor
) -> None:
    from memberlab.jobs import simulate_member_values
    from memberlab.value import member_values

    kw = {"prices": {"monthly": 1.5, "annual": 15.0}, "horizon": 6}
    ref = simulate_member_values(fitted, n_members=60, shard_size=20, rng=5, **kw)
    got = simulate_member_values(
        fitted, n_members=60, shard_size=20, rng=5, executor=executor, **kw
    )
    np.testing.assert_array_equal(got.values, ref.values)
    assert got.info["shards"] == 3 and got.method == "simulate"
    # one shard is the library's own simulation with the job's first child seed
    one = simulate_member_values(fitted, n_members=40, shard_size=40, rng=5, **kw)
    lib = member_values(
        fitted, method="simulate", n_members=40,
        rng=np.random.default_rng(np.random.SeedSequence(5).spawn(1)[0]), **kw,
    )  # fmt: skip
    np.testing.assert_array_equal(one.values, lib.values)
    # and the simulation agrees with the exact recursion within Monte Carlo error
    exact = member_values(fitted, method="exact", **kw)
    ok = np.isfinite(exact.values)
    assert np.nanmax(np.abs(ref.values - exact.values)[ok]) < 0.5 * np.nanmax(np.abs(exact.values))
