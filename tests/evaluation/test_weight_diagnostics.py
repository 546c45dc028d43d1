"""The weight diagnostics reported with every estimate and the warning they decide.

The heavy-weight case is the holdout's own logs, replayed in process (the world of
``tests/service/_holdout_world.py``: 4 items, 300 shoppers whose interest drives
clicks; 1,200 decisions, 30% served uniformly by the holdout, the rest by a callouts
recommender that learns every 20 decisions). Evaluating uniform serving on them gives
weights ``0.25 / p`` up to 25 (the policy's propensity floor): Kish's ESS stays above
200, so an ESS rule alone is silent, but the variance rests on about 10 decisions, and
the intervals miss the truth far more often than their level says (seeds 0-3: IPS
missed twice and SNIPS once, as through the real server). The warning must fire there,
and stay silent on uniform logs and on a softmax-logged world with weights up to 13 at
20,000 decisions.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from memberlab import ConvergenceWarning
from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.cli.evaluate import _table
from memberlab.evaluation import (
    UniformPolicy,
    UntrustworthyEstimateWarning,
    estimate,
    evaluate,
    load_obd,
)
from memberlab.evaluation.ope import MIN_EFFECTIVE, weight_diagnostics

EFFECT = {"delivery": 0.3, "video": 0.1, "music": -0.1, "photos": -0.3}


def _holdout_logs(seed: int, holdout: float, n: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and logged propensities of ``n`` decisions, a share ``holdout`` served
    uniformly (propensity 1/4) and the rest by a learning recommender."""
    g = np.random.default_rng(seed)
    units = [(str(g.choice(list(EFFECT))), float(g.normal(0, 0.4))) for _ in range(300)]
    catalog = Catalog.from_records([{"item_id": b, "benefit": b} for b in EFFECT])
    rec = CalloutRecommender(catalog=catalog, rng=seed)
    ids = list(EFFECT)
    rewards, props, pending = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for t in range(n):
            interest, effect = units[int(g.integers(300))]
            ctx = {"page": str(g.choice(["home", "films", "books"])), "interest": interest}
            if g.random() < holdout:
                item, p = ids[int(g.integers(4))], 0.25
            else:
                served = rec.decide(ctx).items[0]
                item, p = served.item_id, served.propensity
            z = -1.3 + EFFECT[item] + 1.6 * (item == interest) + effect
            r = float(g.random() < 0.5 * math.erfc(-z / math.sqrt(2)))
            rewards.append(r)
            props.append(p)
            pending.append(Feedback(ctx, item, r))
            if t % 20 == 19:
                rec.update(pending)
                pending = []
    return np.array(rewards), np.array(props)


@pytest.mark.parametrize("seed", [0, 1])
def test_warning_fires_on_the_holdout_logs(seed: int) -> None:
    r, p = _holdout_logs(seed, holdout=0.3)
    uniform = np.full(r.size, 0.25)
    for name in ("ipw", "snipw", "dr"):
        q = np.full(r.size, r.mean())  # a constant reward model: DR is judged by its weights
        with pytest.warns(UntrustworthyEstimateWarning, match="variance rests on"):
            res = estimate(name, r, p, uniform, q, q)
        assert res.warning is not None and "heavy-tailed" in res.warning
        assert res.ess > 100  # Kish's ESS alone would not have warned
        assert res.ess_variance < MIN_EFFECTIVE
        assert res.max_weight == pytest.approx(float((0.25 / p).max()))
    # DM uses no weights; Switch-DR bounds them (tau = 1): reported, not judged
    for name in ("dm", "switch-dr"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UntrustworthyEstimateWarning)
            res = estimate(name, r, p, uniform, q, q)
        assert res.warning is None


def test_no_warning_on_well_behaved_logs() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrustworthyEstimateWarning)
        r, p = _holdout_logs(2, holdout=1.0)  # uniform logging: every weight is 1
        res = estimate("ipw", r, p, np.full(r.size, 0.25))
        assert res.warning is None and res.ess == pytest.approx(r.size)
        # softmax logging, a target with 0.85 on the best action: weights up to 13
        g = np.random.default_rng(0)
        logit = g.normal(0, 1, (5, 4))
        logging = np.exp(logit) / np.exp(logit).sum(1, keepdims=True)
        target = np.full((5, 4), 0.05)
        target[np.arange(5), g.integers(0, 4, 5)] = 0.85
        x = g.integers(0, 5, 20_000)
        a = (logging[x].cumsum(1) < g.random(20_000)[:, None]).sum(1)
        rr = (g.random(20_000) < 0.1).astype(float)
        for name in ("ipw", "snipw"):
            res = estimate(name, rr, logging[x, a], target[x, a])
            assert res.warning is None
            assert res.ess_variance > 10 * MIN_EFFECTIVE and res.max_weight > 10


def test_weight_diagnostics_definitions() -> None:
    w = np.array([0.5, 1.0, 1.0, 2.0, 40.0])
    ess, ess_var, top = weight_diagnostics(w)
    assert ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert ess_var == pytest.approx((w**2).sum() ** 2 / (w**4).sum())
    assert top == 40.0
    assert weight_diagnostics(np.full(7, 3.0)) == pytest.approx((7.0, 7.0, 3.0))
    assert weight_diagnostics(np.zeros(3)) == (0.0, 0.0, 0.0)
    big = np.r_[np.ones(1000), 1e80]  # no overflow of w^4
    assert weight_diagnostics(big)[1] == pytest.approx(1.0)
    # a log too small to trust whatever its weights: the ESS rule
    with pytest.warns(UntrustworthyEstimateWarning, match="effective sample size 20.0"):
        estimate("ipw", np.ones(20), np.full(20, 0.5), np.full(20, 0.5))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_cli_table_and_json_carry_the_warning(obd_wheel: Path) -> None:
    """OBD samples: uniform serving evaluated on Bernoulli TS logs (weights up to 178)
    is flagged in the table and the JSON; on the uniform-random logs (every weight 1)
    nothing is (in process: the same table)."""
    proc = _cli("evaluate", "obd", str(obd_wheel), "--behavior", "bts", "--campaign", "men",
                "--estimators", "ipw,snipw")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "ess var" in lines[0] and "max w" in lines[0]
    rows = {ln.split()[0]: ln for ln in lines[1:3]}
    assert "! the variance rests on" in rows["IPS"] and "! " in rows["SNIPS"]
    assert lines[-1].startswith("! untrustworthy:") and "docs/evaluation.md" in lines[-1]
    proc = _cli("evaluate", "obd", str(obd_wheel), "--behavior", "bts", "--campaign", "men",
                "--estimators", "ipw", "--json")  # fmt: skip
    (ips,) = json.loads(proc.stdout)["estimates"]
    assert ips["warning"].startswith("the variance rests on")
    assert ips["ess_variance"] < MIN_EFFECTIVE < ips["ess"] and ips["max_weight"] > 100
    data = load_obd(obd_wheel, behavior="random", campaign="all")
    rep = evaluate(data, UniformPolicy(), estimators=["ipw", "snipw"]).to_dict()
    assert [e["warning"] for e in rep["estimates"]] == [None, None]
    assert "!" not in _table(rep)
