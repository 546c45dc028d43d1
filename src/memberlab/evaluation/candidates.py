"""Offline comparison of candidate settings of the callouts policy on logged decisions.

Each candidate is a set of :class:`memberlab.callouts.CalloutRecommender` settings (prior
variance, crosses, propensity draws, noise, ...). A candidate is refitted on the first
``train_fraction`` of the logs (in time order), and its Thompson-sampling policy is
evaluated off-policy, by seeded Monte Carlo (:class:`RecommenderPolicy`), on the rest, so
no candidate is scored on the data it learnt from. Feature-group importance refits with
one context feature left out of the policy and the reward model, and reports the change
in off-policy value and in held-out log-likelihood of the reward model.
"""

from __future__ import annotations

import itertools
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, spawn
from memberlab.evaluation.dataset import BanditDataset
from memberlab.evaluation.evaluate import OPEReport, evaluate, fit_reward_model
from memberlab.evaluation.ope import UntrustworthyEstimateWarning, canonical_estimator
from memberlab.evaluation.policies import RecommenderPolicy

__all__ = [
    "CandidateResult",
    "build_recommender",
    "compare_candidates",
    "expand_grid",
    "feature_importance",
    "refit_recommender",
]

log = logging.getLogger(__name__)

_SETTING_KEYS = {
    "prior_variance",
    "prior_mean",
    "crosses",
    "propensity_draws",
    "n_propensity_draws",  # the earlier callouts name, still accepted in settings files
    "noise",
    "item_feature",
    "exploration",
    "name",
}


def expand_grid(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Candidate settings from a settings file's content.

    Accepts a list of candidate dicts, ``{"candidates": [...]}``, or
    ``{"base": {...}, "grid": {"prior_variance": [0.05, 0.1], "crosses": [[], [["page",
    "benefit"]]]}}`` (every combination of the grid's lists, on top of ``base``).
    """
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        out = [dict(c) for c in spec]
    elif "candidates" in spec:
        out = [dict(c) for c in spec["candidates"]]
    else:
        base = dict(spec.get("base", {}))
        grid = dict(spec.get("grid", {}))
        if not grid:
            out = [base]
        else:
            keys = sorted(grid)
            for k in keys:
                if not isinstance(grid[k], list) or not grid[k]:
                    raise DataValidationError(
                        f"grid[{k!r}] == {grid[k]!r}, must be a non-empty list."
                    )
            out = [
                base | dict(zip(keys, vals, strict=True))
                for vals in itertools.product(*(grid[k] for k in keys))
            ]
    for c in out:
        unknown = set(c) - _SETTING_KEYS
        if unknown:
            raise DataValidationError(
                f"unknown candidate setting(s) {sorted(unknown)}; allowed: {sorted(_SETTING_KEYS)}."
            )
    if not out:
        raise DataValidationError("the settings name no candidate.")
    if len(out) > 200:
        raise DataValidationError(f"{len(out)} candidates, at most 200 (a small grid).")
    for j, c in enumerate(out):
        c.setdefault(
            "name",
            json.dumps({k: v for k, v in c.items() if k != "name"}, sort_keys=True)
            if c
            else f"candidate{j}",
        )
    return out


def build_recommender(
    items: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], *, rng: RNGLike = 0
) -> Any:
    """A fresh :class:`CalloutRecommender` over ``items`` (export item records) with
    ``settings``."""
    from memberlab.bayes.groups import GroupPrior
    from memberlab.callouts import CalloutRecommender, Catalog

    records = [{"item_id": it["item_id"], **dict(it.get("attributes", {}))} for it in items]
    if not records:
        raise DataValidationError(
            "no items to build a recommender over (the export has no catalogue)."
        )
    kw: dict[str, Any] = {"catalog": Catalog.from_records(records), "rng": rng}
    if "prior_variance" in settings or "prior_mean" in settings:
        kw["default_prior"] = GroupPrior(
            float(settings.get("prior_mean", 0.0)), float(settings.get("prior_variance", 0.1))
        )
    if "crosses" in settings:
        kw["crosses"] = [tuple(c) for c in settings["crosses"]]
    draws = settings.get("propensity_draws", settings.get("n_propensity_draws"))
    if draws is not None:
        kw["propensity_draws"] = int(draws)
    for key in ("noise", "item_feature"):
        if key in settings:
            kw[key] = settings[key]
    if "exploration" in settings:
        kw["exploration"] = settings["exploration"]
    return CalloutRecommender(**kw)


def refit_recommender(rec: Any, data: BanditDataset, *, batch: int = 500) -> Any:
    """Update ``rec`` with the closed rounds of ``data`` in time order, in batches."""
    from memberlab.callouts import Feedback

    contexts = data.contexts()
    fb = [
        Feedback(contexts[i], data.action_names[data.action[i]], float(data.reward[i]))
        for i in range(data.n_rounds)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in range(0, len(fb), batch):
            rec.update(fb[s : s + batch])
    return rec


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's settings and its off-policy report on the evaluation part."""

    name: str
    settings: dict[str, Any]
    report: OPEReport

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "settings": self.settings, **self.report.to_dict()}


def _split(data: BanditDataset, train_fraction: float) -> tuple[BanditDataset, BanditDataset]:
    if not 0 < train_fraction < 1:
        raise DataValidationError(f"train_fraction == {train_fraction}, must be in (0, 1).")
    order = (
        np.argsort(data.records["ts"].to_numpy(), kind="stable")
        if "ts" in data.records
        else np.arange(data.n_rounds)
    )
    cut = round(train_fraction * data.n_rounds)
    if cut < 1 or cut >= data.n_rounds:
        raise DataValidationError(
            f"{data.n_rounds} rounds are too few to split at {train_fraction}."
        )
    return data.subset(order[:cut]), data.subset(order[cut:])


def compare_candidates(
    data: BanditDataset,
    candidates: Sequence[Mapping[str, Any]],
    *,
    items: Sequence[Mapping[str, Any]] | None = None,
    train_fraction: float = 0.5,
    estimators: Sequence[str] = ("ipw", "snipw", "dr"),
    n_draws: int = 200,
    select_by: str = "snipw",
    rng: RNGLike = 0,
    executor: Any = None,
    progress: Any = None,
    **evaluate_kw: Any,
) -> tuple[list[CandidateResult], CandidateResult]:
    """Refit each candidate on the training part and evaluate it on the rest.

    Returns every candidate's result and the best by the ``select_by`` estimator's value.
    Each candidate is one task on ``executor`` (a :mod:`memberlab.jobs` executor or its
    name; serial by default) with its own seed from ``rng``, so the results do not depend
    on the backend or the number of workers; ``progress(done, total)`` is called as
    candidates finish.
    """
    from memberlab.jobs import Executor, get_executor

    items = list(items if items is not None else data.meta.get("items", []))
    train, test = _split(data, train_fraction)
    sel = canonical_estimator(select_by)
    names = [canonical_estimator(e) for e in estimators]
    if sel not in names:
        names.append(sel)
    gens = spawn(rng, len(candidates))
    q_hat = None
    if any(n not in ("ipw", "snipw") for n in names):
        q_hat = fit_reward_model(test, evaluate_kw.pop("reward_model", None), rng=0)
    tasks = [(dict(c), int(g.integers(0, 2**31))) for c, g in zip(candidates, gens, strict=True)]
    shared = (items, train, test, names, q_hat, n_draws, evaluate_kw)
    ex = get_executor(executor)
    if isinstance(executor, Executor):
        out = ex.map(_candidate_task, tasks, shared=shared, desc="candidates", progress=progress)
    else:
        with ex:
            out = ex.map(
                _candidate_task, tasks, shared=shared, desc="candidates", progress=progress
            )
    best = max(out, key=lambda r: r.report.best(sel).value)
    return out, best


def _candidate_task(shared: tuple[Any, ...], task: tuple[dict[str, Any], int]) -> CandidateResult:
    """Refit one candidate on the training part and evaluate it on the test part."""
    items, train, test, names, q_hat, n_draws, evaluate_kw = shared
    c, seed = task
    settings = {k: v for k, v in c.items() if k != "name"}
    rec = refit_recommender(build_recommender(items, settings, rng=seed), train)
    pol = RecommenderPolicy(rec, n_draws=n_draws, rng=seed + 1, name=str(c.get("name")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrustworthyEstimateWarning)
        rep = evaluate(test, pol, estimators=names, q_hat=q_hat, rng=seed + 2, **evaluate_kw)
    return CandidateResult(str(c.get("name")), settings, rep)


def _loglik(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    if np.isin(y, (0.0, 1.0)).all():
        return float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean((y - p) ** 2))


def feature_importance(
    data: BanditDataset,
    *,
    settings: Mapping[str, Any] | None = None,
    items: Sequence[Mapping[str, Any]] | None = None,
    train_fraction: float = 0.5,
    estimator: str = "snipw",
    n_draws: int = 200,
    rng: RNGLike = 0,
) -> list[dict[str, Any]]:
    """Leave-one-feature-group-out importance of the context's features.

    For each group, the context key is removed from every logged context (for the
    policy) and its design columns from the reward model; the policy is refitted on the
    training part and evaluated on the rest, and the reward model's held-out mean
    log-likelihood (Bernoulli; negative squared error for other rewards) is recomputed.
    Each drop is taken relative to the full model's (the value drop over the full
    policy's value, the likelihood drop over its held-out log-loss), the two are
    averaged, and the score is 100 times the group's share of the largest (groups whose
    removal helps score 0).
    """
    items = list(items if items is not None else data.meta.get("items", []))
    settings = dict(settings or {})
    train, test = _split(data, train_fraction)
    key_of = {g: g[4:] if g.startswith("ctx.") else g for g in data.feature_groups}

    def value_and_ll(tr: BanditDataset, te: BanditDataset, drop: str | None) -> tuple[float, float]:
        rec = build_recommender(items, settings, rng=1)
        if drop is not None:
            tr = _without_key(tr, key_of[drop])
            te_policy = _without_key(te, key_of[drop])
        else:
            te_policy = te
        refit_recommender(rec, tr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UntrustworthyEstimateWarning)
            rep = evaluate(
                te_policy, RecommenderPolicy(rec, n_draws=n_draws, rng=rng), estimators=[estimator]
            )
        trd = tr if drop is None else tr.drop_feature_group(drop)
        ted = te if drop is None else te.drop_feature_group(drop)
        q = _heldout_q(trd, ted)
        return rep.estimates[0].value, _loglik(ted.reward, q)

    base_v, base_ll = value_and_ll(train, test, None)
    rows: list[dict[str, Any]] = []
    for g in data.feature_groups:
        v, ll = value_and_ll(train, test, g)
        rows.append({"group": g, "value_change": base_v - v, "loglik_change": base_ll - ll})
    # Each drop relative to the full model's own scale (its value, its held-out log-loss),
    # not to the largest drop: scaling by the largest turned a negligible likelihood
    # change of a noise feature (2e-4 nats) into a full point, tying it with the one
    # feature that mattered (tests/evaluation/test_importance.py, seed 1).
    dv = np.array([max(r["value_change"], 0.0) for r in rows])
    dl = np.array([max(r["loglik_change"], 0.0) for r in rows])
    sv = dv / max(abs(base_v), 1e-12)
    sl = dl / max(abs(base_ll), 1e-12)
    score = (sv + sl) / 2
    score = 100 * score / score.max() if score.max() > 0 else score
    for r, s in zip(rows, score, strict=True):
        r["score"] = float(round(s, 1))
        r["base_value"] = base_v
        r["base_loglik"] = base_ll
    return sorted(rows, key=lambda r: -r["score"])


def _heldout_q(train: BanditDataset, test: BanditDataset) -> np.ndarray:
    from sklearn.base import clone

    from memberlab.evaluation.evaluate import _default_model, _features, _predict

    m = clone(_default_model(train))
    y = train.reward
    if np.unique(y).size < 2:
        return np.full(test.n_rounds, float(y.mean()))
    m.fit(_features(train, np.arange(train.n_rounds), train.action), y)
    return _predict(m, _features(test, np.arange(test.n_rounds), test.action))


def _without_key(data: BanditDataset, key: str) -> BanditDataset:
    """A copy whose raw contexts lack ``key`` (for the policy)."""
    import dataclasses

    recs = data.records.copy()
    if "context" in recs.columns:
        recs["context"] = [
            json.dumps({k: v for k, v in json.loads(c).items() if k != key})
            for c in recs["context"]
        ]
    else:
        cols = [c for c in data.meta.get("context_columns", []) if c != key]
        meta = dict(data.meta)
        meta["context_columns"] = cols
        return dataclasses.replace(data, records=recs, meta=meta)
    return dataclasses.replace(data, records=recs)
