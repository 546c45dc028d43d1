"""Thompson sampling over layouts with a pairwise probit model (Hill et al., KDD 2017).

Per decision: draw one weight vector from the posterior, find the layout with the best
sampled score (hill climbing from the incumbent, random restarts and pair-seeded greedy
starts, or exact enumeration on small spaces), serve it. The propensity of the served
layout is estimated by repeating the same randomised selection with ``propensity_draws``
posterior draws (in antithetic pairs ``mean +- sd * z``: each one an exact posterior
draw) and counting how often it picks the served layout. The decision's seed fixes every
random number, so :meth:`LayoutPolicy.replay` reproduces a decision exactly under the
same posterior and code: a seed recorded before the antithetic propensity draws and the
pair-seeded starts came in may serve a different layout now.

The policy implements the contract of :mod:`memberlab.policy` (one codec, one seed rule,
``get_params``, decisions that never write, the shared meta-prior refit rule).
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import special

from memberlab._errors import DataValidationError, SchemaVersionError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
from memberlab.bayes import FeatureIndex, GroupPrior, SparseRows, probit
from memberlab.layouts.features import GROUPS, FeatureMap
from memberlab.layouts.search import (
    Enumeration,
    SearchTables,
    best_of_draws,
    exact_argmax,
    hill_climb,
    random_layouts,
    workspace,
)
from memberlab.layouts.space import LayoutSpace
from memberlab.policy import (
    PolicyCodecMixin,
    check_exploration,
    check_seed,
    draw_seed,
    new_decision_id,
)

if TYPE_CHECKING:
    from memberlab.bayes.metaprior import MetaPriorFit
    from memberlab.bayes.probit import ProbitState

__all__ = [
    "DEFAULT_PRIORS",
    "SNAPSHOT_SCHEMA_VERSION",
    "LayoutDecision",
    "LayoutPolicy",
    "LeaderboardEntry",
]

logger = logging.getLogger(__name__)

SNAPSHOT_SCHEMA_VERSION = 2  # the one policy codec (memberlab.policy.SCHEMA_VERSION)
_LEGACY_SCHEMA_VERSION = 1
_MAGIC = b"memberlab-layout-policy\n"

DEFAULT_PRIORS: dict[str, GroupPrior] = {
    "bias": GroupPrior(0.0, 1.0),
    "first_order": GroupPrior(0.0, 0.1),
    "second_order": GroupPrior(0.0, 0.05),
    "context": GroupPrior(0.0, 0.05),
}

Event = tuple[Mapping[str, Any] | None, Mapping[str, str], int | float | bool]


@dataclass(frozen=True, slots=True)
class LayoutDecision:
    """One served layout.

    Attributes
    ----------
    decision_id : str
        A fresh identifier (:func:`memberlab.policy.new_decision_id`) for joining
        feedback; left out of equality, so a replay equals the decision it replays.
    layout : dict of str to str
        Slot to variant.
    propensity : float or None
        Monte Carlo estimate of the probability that the policy serves this layout in
        this context: ``(1 + matches) / (1 + propensity_draws)``, never 0. ``None`` when
        ``propensity_draws == 0``.
    policy_version : int
        Number of updates the posterior had seen.
    seed : int
        Seed of every random number of the decision; see :meth:`LayoutPolicy.replay`.
    """

    decision_id: str = field(compare=False)
    layout: dict[str, str]
    propensity: float | None
    policy_version: int
    seed: int

    @property
    def choices(self) -> list[dict[str, str]]:
        """The served layout as the one ranked choice (the policy contract's name)."""
        return [dict(self.layout)]

    @property
    def propensities(self) -> list[float | None]:
        """Propensity of the served layout, as a one-element list."""
        return [self.propensity]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for logs and HTTP responses)."""
        return {
            "decision_id": self.decision_id,
            "layout": dict(self.layout),
            "propensity": self.propensity,
            "policy_version": self.policy_version,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class LeaderboardEntry:
    """A layout ranked by its posterior mean score.

    Attributes
    ----------
    rank : int
        1 for the best.
    layout : dict of str to str
    mean, sd : float
        Posterior mean and standard deviation of the latent (probit) score.
    probability : float
        Posterior predictive probability of a positive reward.
    """

    rank: int
    layout: dict[str, str]
    mean: float
    sd: float
    probability: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the dashboard)."""
        return {
            "rank": self.rank,
            "layout": dict(self.layout),
            "mean": self.mean,
            "sd": self.sd,
            "probability": self.probability,
        }


def _decision_rng(seq: np.random.SeedSequence) -> np.random.Generator:
    """Generator of one decision's random numbers (SFC64: the fastest normals in numpy)."""
    return np.random.Generator(np.random.SFC64(seq))


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataValidationError(f"{name} == {value!r}, must be an int.")
    v = int(value)
    if v < low or (high is not None and v > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise DataValidationError(f"{name} == {v}, must be {rng}.")
    return v


class LayoutPolicy(PolicyCodecMixin):
    """Thompson sampling over a :class:`LayoutSpace` with a probit ADF model.

    Parameters
    ----------
    space : LayoutSpace or mapping
        The space, or its ``dict`` form (see :meth:`LayoutSpace.from_dict`).
    priors : mapping of str to GroupPrior, optional
        Prior of each feature group (``"bias"``, ``"first_order"``, ``"second_order"``,
        ``"context"``); missing groups use :data:`DEFAULT_PRIORS`.
    noise : float, default 1.0
        Scale of the probit link.
    n_restarts : int, default 4
        Hill-climbing restarts per posterior draw.
    max_steps : int, optional
        Most single-slot changes per restart; default ``4 * n_slots``. A restart also
        stops as soon as no single-slot change improves its score.
    exact_max_layouts : int, default 1024
        Enumerate exactly instead of hill climbing when the space has at most this many
        layouts (0 disables enumeration).
    propensity_draws : int, default 64
        Repetitions of the selection used to estimate the propensity, with posterior
        draws in antithetic pairs (``z`` and ``-z``; half the normals to generate).
    update_method : {"sequential", "parallel"}, default "sequential"
        :func:`memberlab.bayes.probit.update` or :func:`~memberlab.bayes.probit.update_parallel`.
    warm_start : bool, default True
        Start one restart of every draw at the layout the posterior mean ranks best (the
        incumbent); the other restarts start at uniformly random allowed layouts.
    pair_starts : int, default 1
        Extra climbs per draw from greedy starts built out of the draw's largest pairwise
        terms (see :func:`memberlab.layouts.search.best_of_draws`). They reach layouts
        that win through interactions and that every single-slot move away from the
        main-effects optimum hides (the basin trap); 0 turns them off.
    shadow_prior_var, shadow_bias_var : float
        Prior variances of the wide-prior shadow model :meth:`refit_priors` trains (the
        bias's is wide: it carries the level).
    shadow_sweeps : int
        Block-Newton sweeps moving the shadow's mean to its MAP before the refit.
    prior_quantile : float in (0.5, 1), optional
        Refit variances to their profile-likelihood upper bound at this level.
    exploration : float
        Exploration scale (>= 0), as in :class:`~memberlab.callouts.CalloutRecommender`:
        Thompson draws use the posterior standard deviation times this factor (1: plain
        Thompson sampling; 0: greedy on the posterior mean). Propensities are those of
        the scaled draws.
    rng : int, Generator or None
        Source of decision seeds when :meth:`decide` gets neither ``seed`` nor ``rng``.

    Attributes
    ----------
    state_ : ProbitState
        The posterior over features (see :class:`~memberlab.layouts.features.FeatureMap`).
    version_ : int
        Number of :meth:`update` calls applied.

    Notes
    -----
    :meth:`decide` only reads the posterior and may run in several threads at once (its
    scratch buffers are per thread); :meth:`update` replaces the posterior and must not
    run concurrently with :meth:`decide` on the same object. A service typically serves
    from one :meth:`from_bytes` snapshot per version and trains another copy.
    """

    policy_kind = "layouts"

    def __init__(
        self,
        space: LayoutSpace | Mapping[str, Any],
        *,
        priors: Mapping[str, GroupPrior] | None = None,
        noise: float = 1.0,
        n_restarts: int = 4,
        max_steps: int | None = None,
        exact_max_layouts: int = 1024,
        propensity_draws: int = 64,
        update_method: Literal["sequential", "parallel"] = "sequential",
        warm_start: bool = True,
        pair_starts: int = 1,
        shadow_prior_var: float = 0.1,
        shadow_bias_var: float = 10.0,
        shadow_sweeps: int = 8,
        prior_quantile: float | None = None,
        exploration: float = 1.0,
        rng: RNGLike = None,
    ) -> None:
        self.space = space if isinstance(space, LayoutSpace) else LayoutSpace.from_dict(space)
        self.priors = dict(priors or {})
        self.noise = noise
        self.n_restarts = n_restarts
        self.max_steps = max_steps
        self.exact_max_layouts = exact_max_layouts
        self.propensity_draws = propensity_draws
        self.update_method = update_method
        self.warm_start = warm_start
        self.pair_starts = pair_starts
        self.shadow_prior_var = shadow_prior_var
        self.shadow_bias_var = shadow_bias_var
        self.shadow_sweeps = shadow_sweeps
        self.prior_quantile = prior_quantile
        self.exploration = exploration
        self.rng = rng
        self._validate()
        self._rng = as_generator(rng)
        self.fmap = FeatureMap(self.space)
        self._tables = SearchTables.build(self.fmap)
        self._enum: Enumeration | None = None
        if self.space.n_layouts <= self.exact_max_layouts:
            self._enum = Enumeration(self.fmap, max_layouts=self.exact_max_layouts)
        self._ctx = FeatureIndex()
        pm, pv = self._prior_arrays(0)
        self.state_ = probit.init(pm.shape[0], prior_mean=pm, prior_var=pv, noise=float(noise))
        self.version_ = 0
        self._refresh()

    # ------------------------------------------------------------------ set-up
    def _validate(self) -> None:
        for name in self.priors:
            if name not in GROUPS:
                raise DataValidationError(
                    f"priors has unknown group {name!r}; allowed groups: {list(GROUPS)}."
                )
            if not isinstance(self.priors[name], GroupPrior):
                raise DataValidationError(f"priors[{name!r}] must be a GroupPrior.")
        if not (isinstance(self.noise, int | float) and math.isfinite(self.noise)) or not (
            self.noise > 0
        ):
            raise DataValidationError(f"noise == {self.noise!r}, must be a positive finite number.")
        _check_int("n_restarts", self.n_restarts, 1, 10_000)
        if self.max_steps is not None:
            _check_int("max_steps", self.max_steps, 1)
        _check_int("exact_max_layouts", self.exact_max_layouts, 0, 5_000_000)
        _check_int("propensity_draws", self.propensity_draws, 0, 100_000)
        _check_int("pair_starts", self.pair_starts, 0, 1_000)
        if not isinstance(self.warm_start, bool):
            raise DataValidationError(f"warm_start == {self.warm_start!r}, must be a bool.")
        if self.update_method not in ("sequential", "parallel"):
            raise DataValidationError(
                f"update_method == {self.update_method!r}, must be 'sequential' or 'parallel'."
            )
        for name in ("shadow_prior_var", "shadow_bias_var"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise DataValidationError(f"{name} == {v!r}, must be positive and finite.")
        _check_int("shadow_sweeps", self.shadow_sweeps, 0, 1_000)
        q = self.prior_quantile
        if q is not None and not (isinstance(q, int | float) and 0.5 < q < 1):
            raise DataValidationError(f"prior_quantile == {q!r}, must be None or in (0.5, 1).")
        check_exploration(self.exploration)

    def group_prior(self, group: str) -> GroupPrior:
        """The prior of one feature group (set, or the default)."""
        return self.priors.get(group, DEFAULT_PRIORS[group])

    def _prior_arrays(self, n_blocks: int) -> tuple[FloatArray, FloatArray]:
        gids = self.fmap.group_ids(n_blocks)
        gm = np.array([self.group_prior(g).mean for g in GROUPS])
        gv = np.array([self.group_prior(g).var for g in GROUPS])
        return gm[gids], gv[gids]

    def _refresh(self) -> None:
        self._sd = np.sqrt(self.state_.var)
        self._incumbents: dict[tuple[tuple[int, ...], int], IntArray] = {}

    @property
    def max_steps_(self) -> int:
        return self.max_steps if self.max_steps is not None else 4 * self.space.n_slots

    @property
    def n_context_values(self) -> int:
        """Context values (field, value) registered so far."""
        return len(self._ctx)

    def context_values(self) -> list[tuple[str, str]]:
        """Registered ``(field, value)`` pairs in block order."""
        return self._ctx.keys()

    # ------------------------------------------------------------------ context
    def _context_items(self, context: Mapping[str, Any] | None) -> list[tuple[str, str]]:
        if context is None:
            return []
        if not isinstance(context, Mapping):
            raise DataValidationError(f"context == {context!r}, must be a mapping or None.")
        items = []
        for name in self.space.context:
            value = context.get(name)
            if value is None:
                continue
            if not isinstance(value, str | int | float | bool):
                raise DataValidationError(
                    f"context[{name!r}] == {value!r}, must be a str, int, float, bool or None."
                )
            items.append((name, str(value)))
        return items

    def _blocks(self, context: Mapping[str, Any] | None) -> tuple[list[int], int]:
        """Registered blocks of a context and the number of unseen values."""
        known, unknown = [], 0
        for name, value in self._context_items(context):
            b = self._ctx.get(name, value)
            if b is None:
                unknown += 1
            else:
                known.append(b)
        return known, unknown

    # ------------------------------------------------------------------ sampling
    def _sample_tables(
        self,
        parts: Sequence[tuple[np.random.Generator, int, bool]],
        known: Sequence[int],
        n_unknown: int,
    ) -> tuple[FloatArray, FloatArray, IntArray | None]:
        """Posterior draws as per-draw tables, and hill-climbing starts.

        ``parts`` lists ``(generator, n_draws, antithetic)``; each generator fills its own
        rows (first its normals, then its restarts' start layouts), so rows from one
        generator do not depend on the others. An antithetic part draws ``ceil(n / 2)``
        standard normal vectors ``z`` and uses both ``z`` and ``-z``: every draw is still
        an exact posterior draw, at half the cost of the normals (the bulk of a decision's
        work); the pairs are negatively correlated, which does not raise the variance of
        a frequency estimate of a monotone event.

        Returns
        -------
        main : ndarray of shape (n_draws, M)
            A main cell's score is its main-effect weight plus one context-by-variant
            weight per context value: a sum of independent Gaussians, drawn as one.
        pair : ndarray of shape (n_draws, n_pair + 1)
        starts : ndarray of shape (n_draws * n_restarts, n_slots) or None
            None when the policy enumerates.
        """
        fm = self.fmap
        M, ns = fm.n_main, fm.n_static
        n = sum(c for _, c, _ in parts)
        z = np.asarray(workspace("layout_draws", (n, ns)), dtype=np.float64)
        mean, var = self._context_moments(known, n_unknown)
        mu, sd = np.zeros(ns), np.zeros(ns)  # the last (zero) pair column stays 0
        mu[:M], sd[:M] = mean, np.sqrt(var)
        mu[M : ns - 1], sd[M : ns - 1] = self.state_.mean[1 + M : ns], self._sd[1 + M : ns]
        if self.exploration != 1:
            sd *= self.exploration
        row = 0
        for gen, c, anti in parts:
            h = (c + 1) // 2 if anti else c
            top = z[row : row + h]
            gen.standard_normal(out=top)
            top *= sd
            top += mu
            # antithetic rows mu - sd * z = 2 mu - (mu + sd * z)
            np.subtract(2.0 * mu, z[row : row + c - h], out=z[row + h : row + c])
            row += c
        starts = None
        if self._enum is None:
            R = self.n_restarts
            starts = np.concatenate([random_layouts(self.space, c * R, g) for g, c, _ in parts])
            if self.warm_start:
                starts[::R] = self._incumbent(known, n_unknown)
        return z[:, :M], z[:, M:], starts

    def _context_moments(
        self, known: Sequence[int], n_unknown: int
    ) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and variance of each main cell's score, shape (M,) each."""
        fm = self.fmap
        M, ns = fm.n_main, fm.n_static
        s = self.state_
        mean = s.mean[1 : 1 + M].copy()
        var = s.var[1 : 1 + M].copy()
        for b in known:
            lo = ns + b * fm.block_size + 1
            mean += s.mean[lo : lo + M]
            var += s.var[lo : lo + M]
        if n_unknown:
            gp = self.group_prior("context")
            mean += n_unknown * gp.mean
            var += n_unknown * gp.var
        return mean, var

    def _mean_tables(self, known: Sequence[int], n_unknown: int) -> tuple[FloatArray, FloatArray]:
        fm = self.fmap
        main, _ = self._context_moments(known, n_unknown)
        pair = np.concatenate([self.state_.mean[1 + fm.n_main : fm.n_static], [0.0]])
        return main[None, :], pair[None, :]

    def _argmax(
        self, main: FloatArray, pair: FloatArray, starts: IntArray | None
    ) -> tuple[IntArray, FloatArray]:
        """Best layout of each draw, (n_draws, n_slots) and (n_draws,)."""
        if self._enum is not None:
            return exact_argmax(self._enum, main, pair)
        assert starts is not None
        return best_of_draws(
            self._tables,
            main,
            pair,
            starts,
            n_restarts=self.n_restarts,
            pair_starts=self.pair_starts,
            max_steps=self.max_steps_,
        )

    def _incumbent(self, known: Sequence[int], n_unknown: int) -> IntArray:
        """Best layout under the posterior mean (cached per posterior and context).

        Found by hill climbing from 64 fixed-seed restarts, so it depends only on the
        posterior: decisions that start a restart here still replay exactly.
        """
        key = (tuple(known), n_unknown)
        hit = self._incumbents.get(key)
        if hit is not None:
            return hit
        main, pair = self._mean_tables(known, n_unknown)
        R = 64
        starts = random_layouts(self.space, R, np.random.default_rng(0))
        L, s = hill_climb(
            self._tables, main, pair, np.zeros(R, dtype=np.int64), starts, max_steps=10_000
        )
        best = L[int(np.argmax(s))].copy()
        if len(self._incumbents) >= 1024:
            self._incumbents.clear()
        self._incumbents[key] = best
        return best

    # ------------------------------------------------------------------ decisions
    def decide(
        self,
        context: Mapping[str, Any] | None = None,
        *,
        rng: RNGLike = None,
        seed: int | None = None,
    ) -> LayoutDecision:
        """Choose a layout for one request by Thompson sampling.

        Parameters
        ----------
        context : mapping, optional
            Values of the space's context fields; fields the space does not declare are
            ignored, missing or ``None`` fields are treated as absent.
        rng : int, Generator or None
            Source of the decision's seed (default: the policy's generator).
        seed : int, optional
            Use this seed instead of drawing one (what :meth:`replay` does).

        Returns
        -------
        LayoutDecision
        """
        seed = draw_seed(self._rng if rng is None else rng) if seed is None else check_seed(seed)
        known, unknown = self._blocks(context)
        serve_seq, prop_seq = np.random.SeedSequence(seed).spawn(2)
        K = self.propensity_draws
        parts = [(_decision_rng(serve_seq), 1, False)]
        if K > 0:
            parts.append((_decision_rng(prop_seq), K, True))
        L, _ = self._argmax(*self._sample_tables(parts, known, unknown))
        served = L[0]
        propensity = None
        if K > 0:
            matches = int(np.all(L[1:] == served[None, :], axis=1).sum())
            propensity = (1 + matches) / (1 + K)
        return LayoutDecision(
            decision_id=new_decision_id(),
            layout=self.space.from_indices(served),
            propensity=propensity,
            policy_version=self.version_,
            seed=seed,
        )

    def replay(self, context: Mapping[str, Any] | None, seed: int) -> LayoutDecision:
        """Repeat a decision from its seed (same layout and propensity, new decision id).

        Exact when the posterior, the hyperparameters and the registered context values
        are those the decision was made under (same :attr:`version_`).
        """
        return self.decide(context, seed=seed)

    def decide_batch(
        self,
        n: int,
        *,
        context: Mapping[str, Any] | None = None,
        rng: RNGLike = None,
    ) -> IntArray:
        """``n`` Thompson-sampling decisions under the current posterior, one draw each.

        For simulations and batched serving; no propensities, no ids.

        Returns
        -------
        ndarray of shape (n, n_slots)
            Variant indices (see :meth:`LayoutSpace.from_indices`).
        """
        n = _check_int("n", n, 0)
        gen = as_generator(rng if rng is not None else self._rng)
        known, unknown = self._blocks(context)
        if n == 0:
            return np.zeros((0, self.space.n_slots), dtype=np.int64)
        L, _ = self._argmax(*self._sample_tables([(gen, n, False)], known, unknown))
        return L

    # ------------------------------------------------------------------ learning
    def _register(self, items: list[tuple[str, str]]) -> list[int]:
        before = len(self._ctx)
        blocks = [self._ctx.index(f, v) for f, v in items]
        added = len(self._ctx) - before
        if added:
            gp = self.group_prior("context")
            self.state_ = probit.grow(
                self.state_,
                added * self.fmap.block_size,
                prior_mean=gp.mean,
                prior_var=gp.var,
            )
        return blocks

    def update(self, events: Iterable[Event]) -> None:
        """Learn from ``(context, layout, reward)`` triples; rewards are 0 or 1.

        ``layout`` is a ``{slot: variant}`` dict naming every slot; ``context`` may be
        ``None``. New context values get features at the context group's prior.
        """
        encoded = self._encode_events(events)
        if encoded is not None:
            self.update_indices(*encoded[:2], blocks=encoded[2])

    def _encode_events(self, events: Iterable[Event]) -> tuple[IntArray, IntArray, IntArray] | None:
        """Index rows of events, registering new context values (a model change)."""
        layouts, rewards, block_rows = [], [], []
        for i, ev in enumerate(events):
            if not isinstance(ev, Sequence) or len(ev) != 3:
                raise DataValidationError(
                    f"events[{i}] == {ev!r}, must be a (context, layout, reward) triple."
                )
            context, layout, reward = ev
            if reward not in (0, 1):
                raise DataValidationError(f"events[{i}] reward == {reward!r}, must be 0 or 1.")
            layouts.append(self.space.to_indices(layout))
            rewards.append(int(reward))
            block_rows.append(self._register(self._context_items(context)))
        if not layouts:
            return None
        F = len(self.space.context)
        blocks = np.full((len(layouts), F), -1, dtype=np.int64)
        for i, row in enumerate(block_rows):
            blocks[i, : len(row)] = row
        return np.stack(layouts), np.asarray(rewards, dtype=np.int64), blocks

    def update_indices(
        self,
        layouts: IntArray,
        rewards: IntArray,
        *,
        blocks: IntArray | None = None,
    ) -> None:
        """Learn from index rows (the fast path for simulations).

        Parameters
        ----------
        layouts : ndarray of shape (n, n_slots)
        rewards : ndarray of shape (n,), values in {0, 1}
        blocks : ndarray of shape (n, n_fields), optional
            Registered context block of each field, -1 where absent.
        """
        L = np.asarray(layouts, dtype=np.int64)
        if L.ndim != 2 or L.shape[1] != self.space.n_slots:
            raise DataValidationError(
                f"layouts has shape {L.shape}, must be (n, {self.space.n_slots})."
            )
        if np.any(L < 0) or np.any(self.space.sizes[None, :] <= L):
            raise DataValidationError("layouts hold a variant index out of range.")
        n_forbidden = int(self.space.violations(L).sum())
        if n_forbidden:
            logger.warning("learning from %d layouts that break a constraint", n_forbidden)
        rows: SparseRows = self.fmap.rows(L, blocks)
        y = np.asarray(rewards)
        if self.update_method == "parallel":
            self.state_ = probit.update_parallel(self.state_, rows, y)
        else:
            self.state_ = probit.update(self.state_, rows, y)
        self.version_ += 1
        self._refresh()

    # ------------------------------------------------------------------ priors
    def feature_groups(self) -> tuple[IntArray, tuple[str, ...]]:
        """Group id of each feature, shape (n_features,), and the group names."""
        return self.fmap.group_ids(len(self._ctx)), GROUPS

    def set_priors(self, priors: Mapping[str, GroupPrior], *, reset: bool = True) -> None:
        """Replace group priors (e.g. after an empirical-Bayes refit).

        With ``reset=True`` the posterior restarts at the new prior, ready for a replay of
        the log in hindsight through :meth:`update`.
        """
        new = {**self.priors, **dict(priors)}
        old, self.priors = self.priors, new
        try:
            self._validate()
        except DataValidationError:
            self.priors = old
            raise
        pm, pv = self._prior_arrays(len(self._ctx))
        self.state_ = probit.set_prior(self.state_, pm, pv, reset=reset)
        if reset:
            self.version_ += 1
        self._refresh()

    def refit_priors(
        self,
        events: Iterable[Event] | None = None,
        *,
        method: Literal["naive", "deconvolved"] = "deconvolved",
        source: Literal["shadow", "messages"] | None = None,
        replay: bool | Iterable[Event] | None = None,
        min_weights: int = 3,
    ) -> MetaPriorFit:
        """Refit the empirical-Bayes group priors (the one rule of
        :func:`memberlab.bayes.metaprior.empirical_bayes_refit`) and retrain in hindsight.

        With ``events`` (every event the model learned from, in order) the priors come
        from a wide-prior shadow model trained on them (``source="shadow"``, the
        default then) and the posterior is rebuilt under the new priors by replaying
        them (``replay=True``, the default then). Without events only
        ``source="messages"`` is possible (deconvolved, from the live model's likelihood
        messages), and the posterior keeps its data under the new priors. Never from the
        live posterior means. The bias keeps its prior and group means are pinned at 0.

        ``refit_priors(method=..., replay=events)`` (the earlier form) still works:
        the replayed events are the log.

        Returns
        -------
        memberlab.bayes.metaprior.MetaPriorFit
        """
        from memberlab.bayes.metaprior import empirical_bayes_refit

        if replay is not None and not isinstance(replay, bool):
            if events is not None:
                raise DataValidationError("pass the log as events or as replay, not both.")
            events, replay = replay, True
        log = None if events is None else list(events)
        if source is None:
            source = "messages" if log is None else "shadow"
        if log is None and source == "shadow":
            raise DataValidationError(
                "source == 'shadow' needs the events the model learned from: "
                "refit_priors(events, ...)."
            )
        encoded = self._encode_events(log) if log else None
        gids, names = self.feature_groups()
        if encoded is None:
            rows = SparseRows(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
            y = np.zeros(0, dtype=np.int64)
        else:
            rows, y = self.fmap.rows(encoded[0], encoded[2]), encoded[1]
        fit, priors = empirical_bayes_refit(
            self.state_,
            rows,
            y,
            gids,
            names,
            method=method,
            source=source,
            fixed_groups=["bias"],
            shadow_prior_var=float(self.shadow_prior_var),
            shadow_fixed_var=float(self.shadow_bias_var),
            shadow_sweeps=int(self.shadow_sweeps),
            prior_quantile=self.prior_quantile,
            min_weights=min_weights,
        )
        do_replay = bool(log) if replay is None else bool(replay) and log is not None
        self.set_priors(priors, reset=do_replay)
        if do_replay and encoded is not None:
            self.update_indices(encoded[0], encoded[1], blocks=encoded[2])
        return fit

    # ------------------------------------------------------------------ reporting
    def leaderboard(
        self,
        context: Mapping[str, Any] | None = None,
        *,
        top: int = 10,
        max_enumerate: int = 200_000,
    ) -> list[LeaderboardEntry]:
        """Layouts ranked by posterior mean score in a context.

        Exact when the space has at most ``max_enumerate`` layouts; otherwise the
        candidates are the local optima of many hill-climbing restarts on the posterior
        mean and their single-slot neighbours (approximate).
        """
        top = _check_int("top", top, 1)
        known, unknown = self._blocks(context)
        main, pair = self._mean_tables(known, unknown)
        if self.space.n_layouts <= max_enumerate:
            enum = self._enum or Enumeration(self.fmap, max_layouts=max_enumerate)
            s = enum.scores(main, pair)[0]
            order = np.argsort(-s, kind="stable")[:top]
            cand = enum.layouts[order]
        else:
            cand = self._leader_candidates(main, pair)
        # exact moments of the candidates' scores, bias and context included
        F = len(self.space.context)
        blocks = np.full((cand.shape[0], max(F, 1)), -1, dtype=np.int64)
        blocks[:, : len(known)] = known
        rows = self.fmap.rows(cand, blocks)
        mu = rows.dot(self.state_.mean)
        var = rows.dot(self.state_.var)  # binary features: x_i^2 = x_i
        if unknown:
            gp = self.group_prior("context")
            mu = mu + unknown * (1 + self.space.n_slots) * gp.mean
            var = var + unknown * (1 + self.space.n_slots) * gp.var
        prob = special.ndtr(mu / np.sqrt(self.state_.noise**2 + var))
        order = np.argsort(-mu, kind="stable")[:top]
        return [
            LeaderboardEntry(
                rank=r + 1,
                layout=self.space.from_indices(cand[i]),
                mean=float(mu[i]),
                sd=float(math.sqrt(var[i])),
                probability=float(prob[i]),
            )
            for r, i in enumerate(order.tolist())
        ]

    def coefficients(self) -> list[dict[str, Any]]:
        """Every weight with its name, group, posterior mean and standard deviation.

        Context features are named ``field=value`` and ``field=value x slot=variant``.
        """
        gids = self.fmap.group_ids(len(self._ctx))
        names = []
        for i in range(self.state_.n_features):
            if i < self.fmap.n_static:
                names.append(self.fmap.describe(i))
            else:
                k, j = divmod(i - self.fmap.n_static, self.fmap.block_size)
                f, v = self._ctx.key(k)
                names.append(f"{f}={v}" if j == 0 else f"{f}={v} x {self.fmap.describe(j)}")
        return [
            {
                "feature": names[i],
                "group": GROUPS[int(gids[i])],
                "mean": float(self.state_.mean[i]),
                "sd": float(self._sd[i]),
            }
            for i in range(self.state_.n_features)
        ]

    def with_space(self, space: LayoutSpace | Mapping[str, Any]) -> LayoutPolicy:
        """The same policy on a changed space, keeping what was learned where it still fits.

        Every weight whose name (see :meth:`coefficients`) exists in both spaces keeps its
        posterior and prior; new weights (a new slot or variant, its pairs and context
        terms) start at their group prior. Hyperparameters, priors, context values and the
        version are kept.
        """
        new = LayoutPolicy(
            space,
            priors=self.priors,
            noise=self.noise,
            n_restarts=self.n_restarts,
            max_steps=self.max_steps,
            exact_max_layouts=self.exact_max_layouts,
            propensity_draws=self.propensity_draws,
            update_method=self.update_method,
            warm_start=self.warm_start,
            pair_starts=self.pair_starts,
        )
        for f, v in self.context_values():
            new._ctx.index(f, v)
        pm, pv = new._prior_arrays(len(new._ctx))
        new.state_ = probit.init(pm.shape[0], prior_mean=pm, prior_var=pv, noise=float(new.noise))
        new._refresh()
        old = {c["feature"]: i for i, c in enumerate(self.coefficients())}
        idx = [
            (j, old[c["feature"]]) for j, c in enumerate(new.coefficients()) if c["feature"] in old
        ]
        if idx:
            j, i = (np.array(x, dtype=np.int64) for x in zip(*idx, strict=True))
            st, os_ = new.state_, self.state_
            mean, var, pmean, pvar = (
                st.mean.copy(),
                st.var.copy(),
                st.prior_mean.copy(),
                st.prior_var.copy(),
            )
            mean[j], var[j], pmean[j], pvar[j] = (
                os_.mean[i],
                os_.var[i],
                os_.prior_mean[i],
                os_.prior_var[i],
            )
            new.state_ = probit.ProbitState(mean, var, pmean, pvar, new.noise)
        new.version_ = self.version_
        new._refresh()
        return new

    def _leader_candidates(self, main: FloatArray, pair: FloatArray) -> IntArray:
        """Local optima of the mean score from 256 restarts and neighbours of the best 32."""
        gen = np.random.default_rng(0)
        R = 256
        starts = random_layouts(self.space, R, gen)
        L, s = hill_climb(
            self._tables, main, pair, np.zeros(R, dtype=np.int64), starts, max_steps=10_000
        )
        optima, first = np.unique(L, axis=0, return_index=True)
        best = optima[np.argsort(-s[first], kind="stable")[:32]]
        parts = [optima]
        sizes = self.space.sizes
        for d in range(self.space.n_slots):
            nb = np.repeat(best, sizes[d], axis=0)
            nb[:, d] = np.tile(np.arange(sizes[d]), best.shape[0])
            parts.append(nb)
        cand = np.unique(np.concatenate(parts), axis=0)
        return cand[~self.space.violations(cand)]

    # ------------------------------------------------------------------ snapshot
    def _state_header(self) -> dict[str, Any]:
        return {
            "context_values": [list(k) for k in self.context_values()],
            "policy_version": self.version_,
            "rng_state": self._rng.bit_generator.state,
        }

    def _state_arrays(self) -> dict[str, FloatArray]:
        s = self.state_
        return {"mean": s.mean, "var": s.var, "prior_mean": s.prior_mean, "prior_var": s.prior_var}

    def _restore(self, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        for f, v in state["context_values"]:
            self._ctx.index(str(f), str(v))
        n = self.fmap.n_features(len(self._ctx))
        for k in ("mean", "var", "prior_mean", "prior_var"):
            if k not in arrays or np.shape(arrays[k]) != (n,):
                raise DataValidationError(
                    f"layout policy snapshot array {k!r} must have shape ({n},)."
                )
        self.state_ = _probit_state(arrays, float(self.noise))
        self.version_ = int(state["policy_version"])
        self._rng.bit_generator.state = state["rng_state"]
        self._refresh()

    @property
    def policy_version(self) -> int:
        """Number of updates (and prior resets) applied: :attr:`version_`."""
        return self.version_

    @classmethod
    def _from_legacy(cls, data: bytes) -> LayoutPolicy | None:
        """Read a version-1 layout snapshot (``memberlab-layout-policy`` magic line)."""
        if not data.startswith(_MAGIC):
            return None
        rest = bytes(data[len(_MAGIC) :])
        cut = rest.find(b"\n")
        if cut < 0:
            raise DataValidationError("layout policy snapshot is truncated (no header line).")
        try:
            header = json.loads(rest[:cut])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataValidationError(f"layout policy snapshot header is not JSON: {exc}") from exc
        version = header.get("schema_version") if isinstance(header, dict) else None
        if version != _LEGACY_SCHEMA_VERSION:
            raise SchemaVersionError(
                f"layout policy snapshot has schema_version {version!r}; "
                f"this release reads {SNAPSHOT_SCHEMA_VERSION} (and {_LEGACY_SCHEMA_VERSION})."
            )
        try:
            priors = {g: GroupPrior(float(m), float(v)) for g, (m, v) in header["priors"].items()}
            pol = cls(LayoutSpace.from_dict(header["space"]), priors=priors, **header["params"])
            with np.load(io.BytesIO(rest[cut + 1 :]), allow_pickle=False) as z:
                arrays = {k: np.array(z[k], dtype=np.float64) for k in z.files}
            pol._restore(
                {
                    "context_values": header["context_values"],
                    "policy_version": header["version"],
                    "rng_state": header["rng_state"],
                },
                arrays,
            )
        except DataValidationError:
            raise
        except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataValidationError(f"layout policy snapshot is malformed: {exc!r}") from exc
        return pol


def _probit_state(arrays: Mapping[str, Any], noise: float) -> ProbitState:
    return probit.from_arrays(arrays, noise)
