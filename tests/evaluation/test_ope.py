"""Off-policy estimators against a logged bandit with a known target value (issue 2).

World (seed stated per test): 5 contexts x 4 actions with known click rates; a softmax
logging policy with known propensities; a greedy-ish target policy whose true value is
computed exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memberlab import DataValidationError
from memberlab.evaluation import (
    OBD_COLUMNS,
    direct_method,
    doubly_robust,
    estimate_all,
    ips,
    snips,
)


def _logs(n: int, seed: int, world: int | None = None) -> tuple[dict[str, np.ndarray], float]:
    rng = np.random.default_rng(seed if world is None else world)
    rates = rng.uniform(0.02, 0.3, (5, 4))
    logit = rng.normal(0, 1, (5, 4))
    logging = np.exp(logit) / np.exp(logit).sum(1, keepdims=True)
    target = np.full((5, 4), 0.05)
    target[np.arange(5), rates.argmax(1)] = 0.85
    truth = float(np.mean((target * rates).sum(1)))
    if world is not None:
        rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, n)
    u = rng.random(n)
    a = (logging[x].cumsum(1) < u[:, None]).sum(1)
    r = (rng.random(n) < rates[x, a]).astype(float)
    model = rates + 0.02  # a slightly wrong reward model
    return {
        "reward": r,
        "propensity": logging[x, a],
        "target_propensity": target[x, a],
        "q": model[x, a],
        "v": (target[x] * model[x]).sum(1),
    }, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimators_cover_the_true_value(seed: int) -> None:
    d, truth = _logs(20_000, seed)
    r, p, pi = d["reward"], d["propensity"], d["target_propensity"]
    for res in (ips(r, p, pi), snips(r, p, pi), doubly_robust(r, p, pi, d["q"], d["v"])):
        assert res.lower <= res.upper
        assert abs(res.value - truth) < 4 * res.se, (res.estimator, res.value, truth)
    dm = direct_method(d["v"])
    assert dm.value == pytest.approx(truth + 0.02, abs=0.01)  # biased by the model error


def test_dr_has_less_variance_than_ips_with_a_good_model() -> None:
    d, _ = _logs(20_000, 3)
    r, p, pi = d["reward"], d["propensity"], d["target_propensity"]
    assert doubly_robust(r, p, pi, d["q"], d["v"]).se < ips(r, p, pi).se


def test_ips_is_unbiased_over_replications() -> None:
    # world seed 0, log seeds 4..53: the mean of 50 IPS estimates lies within 3 of its
    # standard errors of the truth
    ests, truth = [], 0.0
    for s in range(4, 54):
        d, truth = _logs(2_000, s, world=0)
        ests.append(ips(d["reward"], d["propensity"], d["target_propensity"]).value)
    e = np.array(ests)
    assert abs(e.mean() - truth) < 3 * e.std(ddof=1) / np.sqrt(e.size) + 1e-3


def test_estimate_all_and_obd_columns() -> None:
    d, _ = _logs(1_000, 5)
    frame = pd.DataFrame(d)
    table = estimate_all(frame, logged_reward_hat="q", target_value_hat="v")
    assert list(table["estimator"]) == ["IPS", "SNIPS", "DM", "DR"]
    obd = frame.rename(columns={"reward": "click", "propensity": "propensity_score"})
    t2 = estimate_all(obd, **OBD_COLUMNS)
    np.testing.assert_allclose(t2["value"], table["value"][:2])
    with pytest.raises(DataValidationError, match="'nope'"):
        estimate_all(frame, reward="nope")


def test_validation_messages() -> None:
    with pytest.raises(DataValidationError, match=r"logged_propensity contains 0\.0"):
        ips([1.0], [0.0], [1.0])
    with pytest.raises(DataValidationError, match=r"target_propensity contains 2\.0"):
        ips([1.0], [0.5], [2.0])
    with pytest.raises(DataValidationError, match="length"):
        snips([1.0, 0.0], [0.5], [0.5, 0.5])
    with pytest.raises(DataValidationError, match="clip"):
        ips([1.0], [0.5], [0.5], clip=0.0)
    with pytest.raises(DataValidationError, match="empty"):
        ips([], [], [])
    clipped = ips([1.0, 1.0], [0.01, 0.5], [1.0, 0.5], clip=10.0)
    assert clipped.value == pytest.approx((10.0 + 1.0) / 2)
