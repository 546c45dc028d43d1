"""The value objective for callouts: rank candidates by the member value they bring.

One :class:`~memberlab.callouts.CalloutRecommender` per plan learns, per callout and
context, the probability that an impression converts to that plan (probit ADF, feature
groups, empirical-Bayes meta-priors), and one more learns clicks. A decision draws one
posterior sample of every plan model (Thompson sampling) and ranks the candidates by the
sampled expected value::

    EV(item | context) = sum_plans Phi(x.w_plan / noise) * value(state, plan)

where ``value(state, plan)`` is the member value of the plan in the shopper's state
(:class:`~memberlab.value.MemberValues`), the state read from the context's state
columns by name. The decision's score is that expected value; propensities are the
frequencies with which further posterior draws would have served the same items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import special

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray
from memberlab.callouts import Catalog, PendingLedger
from memberlab.callouts.recommender import (
    BatchDecision,
    CalloutRecommender,
    Decision,
    Feedback,
    ServedItem,
)
from memberlab.policy._codec import PolicyCodecMixin, decode_value, encode_value
from memberlab.policy._seeds import check_seed, draw_seed, new_decision_id
from memberlab.value._member import MemberValues

__all__ = ["ValueFeedback", "ValueLedger", "ValueRecommender"]

CLICK = "click"


@dataclass(frozen=True, slots=True)
class ValueFeedback:
    """What became of one served item: a click, and the plan it converted to, if any."""

    context: Mapping[str, Any]
    item_id: str
    clicked: bool = False
    plan: Any = None
    decision_id: str | None = None


def _child_seed(seed: int, model: int) -> int:
    seq = np.random.SeedSequence([seed & (2**64 - 1), model])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class ValueRecommender(PolicyCodecMixin):
    """Thompson sampling on expected member value over callouts.

    Parameters
    ----------
    catalog : Catalog
    values : MemberValues
        Member value of each plan per state (:func:`memberlab.value.member_values`).
    crosses : sequence of (context_key, item_attribute), or None
        Passed to every model, as for :class:`~memberlab.callouts.CalloutRecommender`
        (``None``: every context key crossed with every item attribute).
    propensity_draws : int, default 100
        Posterior draws behind each decision's propensities.
    recommender_params : mapping, optional
        Further keyword arguments of every underlying ``CalloutRecommender`` (priors,
        noise, ...).
    rng : int, Generator or None
        Source of decision seeds when ``decide`` is given neither ``seed`` nor ``rng``.

    Notes
    -----
    A state column missing from a decision's context, or holding a value the choice
    model does not know, raises :class:`~memberlab.value.StateColumnError` (a
    ``ValueError``) naming it. A plan's value is taken as 0 in states where the plan or
    the anchor is infeasible (a member locked into an annual term cannot convert).

    It is a policy kind of :mod:`memberlab.policy` (kind ``"value"``): one snapshot codec
    (the member values and every hyperparameter in the header, each underlying model's
    learned state under its name in the header and the arrays), exact replay from a
    decision's seed, and ``decide`` never changes a model.
    """

    policy_kind: ClassVar[str] = "value"

    def __init__(
        self,
        *,
        catalog: Catalog,
        values: MemberValues,
        crosses: Sequence[tuple[str, str]] | None = (),
        propensity_draws: int = 100,
        recommender_params: Mapping[str, Any] | None = None,
        rng: RNGLike = None,
    ) -> None:
        self.catalog = catalog
        self.values = values
        self.crosses = crosses
        self.propensity_draws = propensity_draws
        self.recommender_params = recommender_params
        self.rng = rng
        self._rng = as_generator(rng)
        self._version = 0
        self._models: dict[str, CalloutRecommender] | None = None

    # ------------------------------------------------------------------ set-up
    def _build(self) -> dict[str, CalloutRecommender]:
        if self._models is not None:
            return self._models
        if not isinstance(self.values, MemberValues):
            raise DataValidationError(
                f"values must be MemberValues, got {type(self.values).__name__}."
            )
        d = self.propensity_draws
        if isinstance(d, bool) or int(d) != d or d < 1:
            raise DataValidationError(f"propensity_draws == {d!r}, must be an integer >= 1.")
        params = dict(self.recommender_params or {})
        for bad in ("catalog", "crosses", "rng", "propensity_draws"):
            if bad in params:
                raise DataValidationError(
                    f"recommender_params must not set {bad!r}; it is a ValueRecommender parameter."
                )
        if not self.values.plans:
            raise DataValidationError("values has no plan besides the anchor.")
        self._plan_idx = [self.values.action_index(p) for p in self.values.plans]
        crosses = None if self.crosses is None else list(self.crosses)
        self._models = {
            name: CalloutRecommender(
                catalog=self.catalog, crosses=crosses, propensity_draws=1, **params
            )
            for name in [CLICK, *map(str, self.values.plans)]
        }
        return self._models

    @property
    def plans(self) -> list[str]:
        """Non-anchor plans, in the choice model's order."""
        return [str(p) for p in self.values.plans]

    @property
    def models(self) -> dict[str, CalloutRecommender]:
        """The underlying recommenders: ``"click"`` and one per plan."""
        return self._build()

    @property
    def click_model(self) -> CalloutRecommender:
        """The underlying recommender that learns clicks (``models["click"]``)."""
        return self._build()[CLICK]

    @property
    def policy_version(self) -> int:
        """Bumped by every :meth:`update` and :meth:`refit_priors`."""
        return self._version

    def plan_values(self, context: Mapping[str, Any]) -> FloatArray:
        """Member value of each plan in the context's state, shape (n_plans,)."""
        if not isinstance(context, Mapping):
            raise DataValidationError(f"context must be a dict, got {type(context).__name__}.")
        self._build()
        mv = self.values
        row = mv.values[mv.code_of(context)]
        return np.nan_to_num(row[self._plan_idx], nan=0.0)

    # ------------------------------------------------------------------ serving
    def _seed(self, seed: int | None, rng: RNGLike) -> int:
        if seed is not None:
            return check_seed(seed)
        return draw_seed(self._rng if rng is None else rng)

    def _sampled(
        self, context: Mapping[str, Any], ids: list[str], seed: int, n_draws: int
    ) -> FloatArray:
        """Sampled conversion probabilities, shape (n_draws, n_plans, n_candidates).

        Draw 0 is the served one; every plan model draws its scores for all candidates in
        one batch from its own child seed of ``seed``.
        """
        models = self._build()
        out = np.empty((n_draws, len(self.plans), len(ids)))
        rows = np.arange(n_draws)[:, None]
        for p, plan in enumerate(self.plans):
            m = models[plan]
            batch = m.decide_batch(
                context, n=n_draws, candidates=ids, k=len(ids), rng=_child_seed(seed, p + 1)
            )
            scores = np.empty((n_draws, len(ids)))
            scores[rows, batch.chosen] = batch.scores
            out[:, p] = special.ndtr(scores / m.noise)
        return out

    def decide(
        self,
        context: Mapping[str, Any],
        *,
        candidates: Sequence[str] | None = None,
        k: int = 1,
        seed: int | None = None,
        rng: RNGLike = None,
        with_propensity: bool = True,
    ) -> Decision:
        """Thompson-sample the top ``k`` candidates by expected member value.

        Parameters
        ----------
        context : dict
            Shopper context; must carry the choice model's state columns by name.
        candidates : list of str, optional
            Eligible item ids (default: every active item).
        k : int, default 1
        seed : int, optional
            The decision's seed in ``[0, 2**63)`` (what a replay passes).
        rng : int, Generator or None
            Source of the seed when ``seed`` is None (an int seeds a fresh generator;
            None: the recommender's own generator).
        with_propensity : bool, default True

        Returns
        -------
        Decision
            ``score`` of each served item is its sampled expected value (money).
        """
        self._build()
        vals = self.plan_values(context)
        ids = list(self.catalog.active_ids() if candidates is None else candidates)
        n = len(ids)
        if n == 0:
            raise DataValidationError("no candidates: the catalog has no active item.")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n:
            raise DataValidationError(f"k == {k!r}, must be an integer in [1, {n}].")
        seed = self._seed(seed, rng)
        d = int(self.propensity_draws) if with_propensity else 0
        ev = np.einsum("p,dpn->dn", vals, self._sampled(context, ids, seed, 1 + d))
        order = np.argsort(-ev, axis=1, kind="stable")[:, :k]
        top = order[0]
        slot: list[float | None] = [None] * k
        inset: list[float | None] = [None] * k
        if with_propensity:
            ranked = order[1:]
            # the served draw counts as one of d + 1, as in CalloutRecommender
            slot = list(((ranked == top[None, :]).sum(axis=0) + 1.0) / (d + 1))
            inset = list(
                ((ranked[:, :, None] == top[None, None, :]).any(axis=1).sum(axis=0) + 1.0) / (d + 1)
            )
        items = [ServedItem(ids[j], float(ev[0, j]), slot[r], inset[r]) for r, j in enumerate(top)]
        version = self.policy_version
        return Decision(new_decision_id(), items, version, seed)

    def decide_batch(
        self,
        context: Mapping[str, Any],
        *,
        n: int,
        candidates: Sequence[str] | None = None,
        k: int = 1,
        seed: int | None = None,
        rng: RNGLike = None,
    ) -> BatchDecision:
        """``n`` Thompson decisions for one context at once (no propensities), as
        :meth:`CalloutRecommender.decide_batch` for one context: what off-policy
        evaluation (:class:`memberlab.evaluation.RecommenderPolicy`) draws.

        Each decision ranks the candidates by the expected value under its own posterior
        draw of every plan model; ``scores`` are those expected values.
        """
        if not isinstance(context, Mapping):
            raise DataValidationError(f"context must be a dict, got {type(context).__name__}.")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise DataValidationError(f"n == {n!r}, must be an integer >= 1.")
        self._build()
        vals = self.plan_values(context)
        ids = list(self.catalog.active_ids() if candidates is None else candidates)
        if not ids:
            raise DataValidationError("no candidates: the catalog has no active item.")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= len(ids):
            raise DataValidationError(f"k == {k!r}, must be an integer in [1, {len(ids)}].")
        seed = self._seed(seed, rng)
        ev = np.einsum("p,dpn->dn", vals, self._sampled(context, ids, seed, int(n)))
        order = np.argsort(-ev, axis=1, kind="stable")[:, :k]
        return BatchDecision(ids, order, np.take_along_axis(ev, order, axis=1), self._version, seed)

    def expected_values(
        self,
        context: Mapping[str, Any],
        level: float = 0.95,
        *,
        n_draws: int = 2000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Posterior expected value and click rate of every active item, side by side.

        Parameters
        ----------
        context : dict
            Must carry the choice model's state columns by name.
        level : float, default 0.95
            Level of the equal-tailed credible intervals.
        n_draws : int, default 2000
            Posterior draws behind the expected value's interval (seeded by ``seed``,
            so the same model and context give the same interval).

        Returns
        -------
        DataFrame
            ``item_id, expected_value, click_rate, p_<plan>..., ev_lower, ev_upper,
            click_lower, click_upper`` (means are posterior predictive, no exploration;
            the expected value's interval is over posterior draws of every plan model
            with the member values held fixed), sorted by expected value.
        """
        if not 0 < level < 1:
            raise DataValidationError(f"level == {level}, must be in (0, 1).")
        models = self._build()
        vals = self.plan_values(context)
        ctx = dict(context)
        clicks = models[CLICK].click_rates(ctx, level)
        ids = [str(i) for i in clicks["item_id"]]
        out = pd.DataFrame({"item_id": ids})
        ev = np.zeros(len(out))
        for p, plan in enumerate(self.plans):
            rate = models[plan].click_rates(ctx)["mean"].to_numpy()
            out[f"p_{plan}"] = rate
            ev += vals[p] * rate
        out.insert(1, "expected_value", ev)
        out.insert(2, "click_rate", clicks["mean"].to_numpy())
        if ids:
            draws = np.einsum("p,dpn->dn", vals, self._sampled(ctx, ids, seed, int(n_draws)))
            q = [50 * (1 - level), 50 * (1 + level)]
            out["ev_lower"], out["ev_upper"] = np.percentile(draws, q, axis=0)
        else:
            out["ev_lower"] = out["ev_upper"] = np.zeros(0)
        out["click_lower"] = clicks["lower"].to_numpy()
        out["click_upper"] = clicks["upper"].to_numpy()
        return out.sort_values("expected_value", ascending=False, ignore_index=True)

    # ------------------------------------------------------------------ learning
    def _split(self, feedback: Sequence[ValueFeedback]) -> dict[str, list[Feedback]]:
        plans = self.plans
        out: dict[str, list[Feedback]] = {CLICK: [], **{p: [] for p in plans}}
        for fb in feedback:
            if not isinstance(fb, ValueFeedback):
                raise DataValidationError(
                    f"feedback must be ValueFeedback records, got {type(fb).__name__}."
                )
            plan = None if fb.plan is None else str(fb.plan)
            if plan is not None and plan not in plans:
                raise DataValidationError(
                    f"plan == {fb.plan!r} for item {fb.item_id!r} is not a plan of the choice "
                    f"model; plans: {plans}."
                )
            out[CLICK].append(Feedback(fb.context, fb.item_id, float(bool(fb.clicked))))
            for p in plans:
                out[p].append(Feedback(fb.context, fb.item_id, float(plan == p)))
        return out

    def update(self, feedback: Sequence[ValueFeedback]) -> None:
        """Learn a batch: every impression is a 0/1 label for clicks and for each plan."""
        models = self._build()
        if not feedback:
            return
        for name, fbs in self._split(feedback).items():
            models[name].update(fbs)
        self._version += 1

    def refit_priors(self, feedback_log: Sequence[ValueFeedback], **kwargs: Any) -> dict[str, Any]:
        """Refit every model's empirical-Bayes priors on the log (keyword arguments of
        :meth:`CalloutRecommender.refit_priors`); returns each model's result by name."""
        models = self._build()
        out = {
            name: models[name].refit_priors(fbs, **kwargs)
            for name, fbs in self._split(feedback_log).items()
        }
        self._version += 1
        return out

    # ------------------------------------------------------------------ persistence
    # The member values and every hyperparameter travel in the header's params (the one
    # codec); each underlying model's learned state (its feature registry, refitted group
    # priors and generator in the header, its posterior arrays prefixed ``m<i>.``).
    def _state_header(self) -> dict[str, Any]:
        models = self._build()
        return {
            "policy_version": self._version,
            "rng_state": self._rng.bit_generator.state,
            "models": [
                [name, {**m._state_header(), "priors": encode_value(m.priors)}]
                for name, m in models.items()
            ],
        }

    def _state_arrays(self) -> dict[str, FloatArray]:
        return {
            f"m{i}.{key}": arr
            for i, m in enumerate(self._build().values())
            for key, arr in m._state_arrays().items()
        }

    def _restore(self, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        models = self._build()
        stored = [(str(name), st) for name, st in state["models"]]
        if [name for name, _ in stored] != list(models):
            raise DataValidationError(
                f"value snapshot holds models {[n for n, _ in stored]}, expected {list(models)} "
                "(clicks and one per plan of the member values)."
            )
        for i, ((_, st), m) in enumerate(zip(stored, models.values(), strict=True)):
            prefix = f"m{i}."
            mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            priors = decode_value(st["priors"])
            if not isinstance(priors, dict):
                raise DataValidationError("value snapshot: a model's priors must be a mapping.")
            m.priors = priors
            m._restore(st, mine)
        self._version = int(state["policy_version"])
        self._rng.bit_generator.state = state["rng_state"]


class ValueLedger:
    """Delayed feedback for the value objective: clicks and conversions per plan.

    One :class:`~memberlab.callouts.PendingLedger` per channel (clicks and each plan), so
    attribution windows, early events, duplicates and zero rewards behave exactly as for
    clicks. :meth:`close` merges the channels back into :class:`ValueFeedback` records
    (an impression converting to several plans in its window counts the first in plan
    order).

    Parameters
    ----------
    plans : sequence of str
    window, early_hold : float
        As for :class:`~memberlab.callouts.PendingLedger`.
    """

    def __init__(self, *, plans: Sequence[str], window: float, early_hold: float = 300.0) -> None:
        self.plans = [str(p) for p in plans]
        if not self.plans:
            raise DataValidationError("plans is empty, must name at least one plan.")
        self.window = window
        self.early_hold = early_hold
        self._ledgers = {
            name: PendingLedger(window=window, early_hold=early_hold)
            for name in [CLICK, *self.plans]
        }

    def add_decision(
        self, decision_id: str, item_ids: Sequence[str], context: Mapping[str, Any], t: float
    ) -> None:
        for led in self._ledgers.values():
            led.add_decision(decision_id, item_ids, context, t)

    def add_event(
        self,
        event_id: str,
        decision_id: str,
        item_id: str,
        kind: str,
        t: float,
        *,
        plan: Any = None,
    ) -> str:
        """A ``"click"`` or a ``"conversion"`` to ``plan``; returns the ledger's status."""
        if kind == CLICK:
            if plan is not None:
                raise DataValidationError("a click event carries no plan.")
            return str(self._ledgers[CLICK].add_event(event_id, decision_id, item_id, kind, t))
        if kind != "conversion":
            raise DataValidationError(f"kind == {kind!r}, must be 'click' or 'conversion'.")
        if plan is None or str(plan) not in self.plans:
            raise DataValidationError(
                f"conversion plan == {plan!r}, must be one of the plans {self.plans}."
            )
        return str(self._ledgers[str(plan)].add_event(event_id, decision_id, item_id, kind, t))

    def close(self, now: float) -> list[ValueFeedback]:
        """Close every window ending by ``now``; one record per served item."""
        merged: dict[tuple[str | None, str], dict[str, Any]] = {}
        for name, led in self._ledgers.items():
            for fb in led.close(now):
                rec = merged.setdefault(
                    (fb.decision_id, fb.item_id),
                    {"context": fb.context, "clicked": False, "plan": None},
                )
                if fb.reward > 0:
                    if name == CLICK:
                        rec["clicked"] = True
                    elif rec["plan"] is None:
                        rec["plan"] = name
        return [
            ValueFeedback(r["context"], item, r["clicked"], r["plan"], did)
            for (did, item), r in merged.items()
        ]

    @property
    def n_pending(self) -> int:
        return self._ledgers[CLICK].n_pending
