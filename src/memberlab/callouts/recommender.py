"""Thompson-sampling callout recommender over item attributes and shopper context.

Each (context, item) pair is a binary feature row: a bias, the context's features
(``ctx.<key>``), the item's features from the :class:`~memberlab.callouts.Catalog` (plus
an ``item`` id feature unless ``item_feature=False``) and configured crosses of a
context key with an item attribute (group ``"<key>x<attribute>"``). The learner is the
probit ADF of :mod:`memberlab.bayes.probit`.

Serving cost. For one context and one candidate set the scores of the candidates under
a posterior draw are jointly Gaussian, ``N(X mean, X diag(var) X^T)``; the recommender
caches the mean vector and a Cholesky factor ``L`` of that covariance per context (until
the next update; the 4,096 most recent contexts, oldest dropped first), so one Thompson
draw is ``n_candidates`` normals and one small matrix product, however many features
there are. This is exactly the distribution of the scores under a weight draw, not an
approximation. A context not cached sums cached parts (per candidate set and per context
field) and factorises the sum in place. What a seed returns does not depend on what is
cached: the same sum, in the same order, to the bit.

Reproducibility. Every decision has a seed in ``[0, 2**63)`` (``seed=``, or drawn from
``rng``, or from the recommender's own generator; see :mod:`memberlab.policy`) and all of
its randomness - the Thompson draw and the propensity draws - comes from that seed.
``decide(..., seed=d.seed)`` with the same policy state replays the decision exactly.

Serving never writes. Features a decision meets that training never saw (a new context
value, a new item, a cross that has not fired) are scored from their group's prior
without being registered; only :meth:`CalloutRecommender.update` (and refits) grow the
model. Featurisation lives in :class:`memberlab.callouts.features.CalloutFeatures`.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import math
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from scipy import special
from scipy.linalg.lapack import dpotrf as _potrf

from memberlab._errors import DataValidationError, SchemaVersionError, UnknownItemError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import FloatArray, IntArray
from memberlab.bayes import probit
from memberlab.bayes._sparse import SparseRows
from memberlab.bayes.groups import FeatureIndex, GroupPrior
from memberlab.bayes.metaprior import MetaPriorFit, empirical_bayes_refit, prior_arrays
from memberlab.callouts.catalog import Catalog
from memberlab.callouts.features import (
    BIAS_GROUP,
    ITEM_GROUP,
    CalloutFeatures,
    ContextCode,
    Field,
    context_key,
)
from memberlab.policy import (
    SEED_BOUND,
    PolicyCodecMixin,
    check_exploration,
    check_seed,
    draw_seed,
    new_decision_id,
)

if TYPE_CHECKING:  # pandas is imported lazily: serving does not need it
    import pandas as pd

__all__ = [
    "BIAS_GROUP",
    "ITEM_GROUP",
    "SNAPSHOT_SCHEMA_VERSION",
    "BatchDecision",
    "CalloutRecommender",
    "Decision",
    "Feedback",
    "RefitResult",
    "ServedItem",
]

logger = logging.getLogger(__name__)

SNAPSHOT_SCHEMA_VERSION = 2  # the one policy codec (memberlab.policy.SCHEMA_VERSION)
_LEGACY_SCHEMA_VERSION = 1
_MAGIC = b"MEMBERLAB-CALLOUTS\n"
_MASK128 = (1 << 128) - 1
_MASK64 = (1 << 64) - 1
_SEED_MULT = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd: seed -> state is a bijection
_SEED_ADD = 0x2545F4914F6CDD1D
_PCG_INC = 0xDA3E39CB94B95BDB  # odd stream increment
_MAX_CACHE = 4096
_F64 = np.dtype(np.float64)
_RESTORING: contextvars.ContextVar[bool] = contextvars.ContextVar("restoring", default=False)


@dataclass(frozen=True, slots=True)
class Feedback:
    """A reward for one served item in one context (``reward > 0`` is a click).

    ``decision_id`` is set when the record comes from a :class:`PendingLedger`.
    """

    context: Mapping[str, Any]
    item_id: str
    reward: float
    decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServedItem:
    """One served item: its sampled score and its propensity.

    ``propensity`` is the probability that this item lands in this slot under the
    policy's randomness; ``set_propensity`` that it lands anywhere in the top k (equal
    for ``k == 1``). Both are ``None`` when propensities were not requested.
    """

    item_id: str
    score: float
    propensity: float | None
    set_propensity: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A ranked top-k decision, replayable from ``seed`` at ``policy_version``.

    ``decision_id`` is fresh per decision (:func:`memberlab.policy.new_decision_id`) and
    left out of equality: a replay equals the decision it replays.
    """

    decision_id: str = field(compare=False)
    items: list[ServedItem]
    policy_version: int
    seed: int

    @property
    def item_ids(self) -> list[str]:
        return [s.item_id for s in self.items]

    @property
    def choices(self) -> list[str]:
        """Served item ids, best first (the policy contract's name)."""
        return [s.item_id for s in self.items]

    @property
    def propensities(self) -> list[float | None]:
        """Slot propensity of each served item (``None`` when not requested)."""
        return [s.propensity for s in self.items]


class _ServedTwin:
    __slots__ = ("item_id", "score", "propensity", "set_propensity")  # noqa: RUF023 - field order

    def __init__(self, a: Any, b: Any, c: Any, d: Any) -> None:
        self.item_id, self.score, self.propensity, self.set_propensity = a, b, c, d


class _DecisionTwin:
    __slots__ = ("decision_id", "items", "policy_version", "seed")

    def __init__(self, a: Any, b: Any, c: Any, d: Any) -> None:
        self.decision_id, self.items, self.policy_version, self.seed = a, b, c, d


def _built_as(cls: type, twin: type) -> Any:
    """A constructor of the frozen slotted dataclass ``cls`` through ``twin``, a plain
    class with the same slots: the twin's ``__init__`` sets them with plain attribute
    stores, then the object becomes a ``cls`` (``__class__`` assignment, allowed
    between equal slot layouts).

    The generated ``__init__`` of a frozen dataclass goes through ``object.__setattr__``
    per field, about twice the cost; a decision builds two records, so serving builds
    them this way (equal records, every field set, positional arguments in field order:
    checked here and in tests/callouts).
    """
    names = tuple(f.name for f in fields(cls))
    if twin.__slots__ != names or cls.__slots__ != names:  # type: ignore[attr-defined]
        raise TypeError(f"{twin.__name__} must have the slots {names} of {cls.__name__}.")

    def make(a: Any, b: Any, c: Any, d: Any) -> Any:
        obj = twin(a, b, c, d)
        obj.__class__ = cls
        return obj

    return make


_served = _built_as(ServedItem, _ServedTwin)  # (item_id, score, propensity, set_propensity)
_decision = _built_as(Decision, _DecisionTwin)  # (decision_id, items, policy_version, seed)


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """Decisions for many requests sharing one candidate set.

    Attributes
    ----------
    candidate_ids : list of str, length n_candidates
    chosen : ndarray of shape (n_requests, k)
        Index into ``candidate_ids`` of each served item, best first.
    scores : ndarray of shape (n_requests, k)
    policy_version, seed : int
    """

    candidate_ids: list[str]
    chosen: IntArray
    scores: FloatArray
    policy_version: int
    seed: int

    def item_ids(self, i: int) -> list[str]:
        return [self.candidate_ids[j] for j in self.chosen[i]]


@dataclass(frozen=True, slots=True)
class RefitResult:
    """What :meth:`CalloutRecommender.refit_priors` estimated and did."""

    fit: MetaPriorFit
    priors: dict[str, GroupPrior]
    n_replayed: int
    policy_version: int


@dataclass(slots=True)
class _Block:
    """Cached serving quantities for one (context, candidate set) at one policy version."""

    item_ids: list[str]
    base: FloatArray  # (n,) mean score
    chol: FloatArray  # (n, n) lower Cholesky factor of the score covariance
    score_var: FloatArray  # (n,) diagonal of the covariance (a view; blocks are read-only)


class CalloutRecommender(PolicyCodecMixin):
    """Bayesian probit recommender with Thompson sampling over callouts.

    Parameters
    ----------
    catalog : Catalog
        The items; the recommender reads it (adds and retirements take effect at once).
    crosses : sequence of (context_key, item_attribute), or None
        Context-by-attribute interactions, each its own feature group
        ``"<key>x<attribute>"``. ``None`` (the default) crosses every context key with
        every item attribute; a list, e.g. ``[("page", "benefit")]``, narrows the set
        (``[]`` for none). A cross naming an attribute no item has is refused when the
        catalog has items.
    context_edges : mapping of context key to bucket edges, optional
        Edges of numeric context values; keys without edges are bucketed by
        quarter-octaves (see :mod:`memberlab.callouts.features`).
    cross_prior : GroupPrior, optional
        Prior of every cross group without its own entry in ``priors`` (default:
        ``default_prior``).
    propensity_draws : int
        Posterior draws used to estimate each decision's propensities (>= 1).
    noise : float
        Probit link scale (> 0).
    priors : mapping of group name to GroupPrior, optional
        Prior of each feature group; groups not named use ``default_prior``.
    default_prior : GroupPrior
        Prior of groups without their own entry. The default N(0, 0.1) suits click
        rates of a few percent: a dozen active features then move the probit score by
        about one unit a priori (on the cold-start simulator, seeds 0-3, 30,000 rounds,
        it cut regret by 16% against N(0, 1)).
    bias_prior : GroupPrior
        Prior of the bias weight (kept fixed by :meth:`refit_priors`; it carries the
        overall click level, which identifies the groups' means). The default N(-2, 1)
        centres the click rate near Phi(-2) = 2.3%.
    item_feature : bool
        Add a per-item id feature (group ``"item"``) on top of the attributes.
    shadow_prior_var : float
        Prior variance of the wide-prior shadow model :meth:`refit_priors` trains.
    shadow_bias_var : float
        Prior variance of the bias in the shadow model (wide: it carries the level).
    shadow_sweeps : int
        Block-Newton sweeps moving the shadow's mean to its MAP before the refit.
    prior_quantile : float in (0.5, 1), optional
        Refit each group's variance to its profile-likelihood upper bound at this level
        instead of the ML estimate (deconvolved only; more exploration early on).
    update_method : {"sequential", "parallel"}
        Sequential ADF over a feedback batch, or one vectorised step per batch.
    exploration : float
        Exploration scale (>= 0): Thompson draws use the posterior standard deviation
        times this factor (1: plain Thompson sampling; above 1 explores more; 0 is
        greedy on the posterior mean, every propensity 1). Propensities are those of the
        scaled draws.
    rng : int, Generator or None
        Source of decision seeds when ``decide`` is given neither ``seed`` nor ``rng``.
    """

    policy_kind = "callouts"
    renamed_params: ClassVar[Mapping[str, str]] = {
        "n_propensity_draws": "propensity_draws",
        "update_mode": "update_method",
    }

    def __init__(
        self,
        *,
        catalog: Catalog,
        crosses: Sequence[tuple[str, str]] | None = None,
        context_edges: Mapping[str, Sequence[float]] | None = None,
        cross_prior: GroupPrior | None = None,
        propensity_draws: int = 100,
        noise: float = 1.0,
        priors: Mapping[str, GroupPrior] | None = None,
        default_prior: GroupPrior = GroupPrior(0.0, 0.1),  # noqa: B008 - immutable
        bias_prior: GroupPrior = GroupPrior(-2.0, 1.0),  # noqa: B008 - immutable
        item_feature: bool = True,
        shadow_prior_var: float = 0.1,
        shadow_bias_var: float = 10.0,
        shadow_sweeps: int = 8,
        prior_quantile: float | None = None,
        update_method: Literal["sequential", "parallel"] = "sequential",
        exploration: float = 1.0,
        rng: RNGLike = None,
    ) -> None:
        self.catalog = catalog
        self.crosses = crosses
        self.context_edges = context_edges
        self.cross_prior = cross_prior
        self.propensity_draws = propensity_draws
        self.noise = noise
        self.priors = dict(priors or {})
        self.default_prior = default_prior
        self.bias_prior = bias_prior
        self.item_feature = item_feature
        self.shadow_prior_var = shadow_prior_var
        self.shadow_bias_var = shadow_bias_var
        self.shadow_sweeps = shadow_sweeps
        self.prior_quantile = prior_quantile
        self.update_method = update_method
        self.exploration = exploration
        self.rng = rng
        self._validate()
        self._rng = as_generator(rng)
        bitgen = self._rng.bit_generator
        # decide draws its seed with this when it can (see _seed)
        self._raw = bitgen.random_raw if type(bitgen) is np.random.PCG64 else None
        self._local = threading.local()  # per-thread decision generator: decide is lock-free
        self._features = CalloutFeatures(
            catalog,
            self._crosses,
            item_feature=bool(item_feature),
            context_edges=context_edges,
        )
        self._index = FeatureIndex()
        self._state = probit.init(0, noise=noise)
        self._version = 0
        self._bias = self._ensure([(BIAS_GROUP, "1")])[0]
        self._catalog_seen = -1
        self._row_cache: dict[tuple[Any, str], IntArray] = {}
        self._shapes: dict[tuple[str, ...] | None, _Shape] = {}
        self._blocks: OrderedDict[tuple[Any, Any], _Block] = OrderedDict()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        if not isinstance(self.catalog, Catalog):
            raise DataValidationError(
                f"catalog must be a Catalog, got {type(self.catalog).__name__}."
            )
        if int(self.propensity_draws) != self.propensity_draws or self.propensity_draws < 1:
            raise DataValidationError(
                f"propensity_draws == {self.propensity_draws}, must be an integer >= 1."
            )
        if not (self.noise > 0 and math.isfinite(self.noise)):
            raise DataValidationError(f"noise == {self.noise}, must be positive and finite.")
        check_exploration(self.exploration)
        if not (self.shadow_prior_var > 0 and math.isfinite(self.shadow_prior_var)):
            raise DataValidationError(
                f"shadow_prior_var == {self.shadow_prior_var}, must be positive and finite."
            )
        if self.update_method not in ("sequential", "parallel"):
            raise DataValidationError(
                f"update_method == {self.update_method!r}, must be 'sequential' or 'parallel'."
            )
        for k, p in self.priors.items():
            if not isinstance(p, GroupPrior):
                raise DataValidationError(f"priors[{k!r}] must be a GroupPrior, got {p!r}.")
        if self.cross_prior is not None and not isinstance(self.cross_prior, GroupPrior):
            raise DataValidationError(
                f"cross_prior == {self.cross_prior!r}, must be a GroupPrior or None."
            )
        if self.crosses is None:
            self._crosses: list[tuple[str, str]] | None = None
        else:
            pairs = []
            for c in self.crosses:
                if (
                    not isinstance(c, list | tuple)
                    or len(c) != 2
                    or not all(isinstance(x, str) and x for x in c)
                ):
                    raise DataValidationError(
                        f"crosses entry {c!r}, must be a (context_key, item_attribute) pair "
                        "of non-empty strings."
                    )
                pairs.append((c[0], c[1]))
            self._crosses = pairs
            bad = [] if _RESTORING.get() else self.unknown_cross_attributes()
            if bad:
                known = CalloutFeatures(self.catalog, None).known_attributes()
                raise DataValidationError(
                    f"crosses {bad} name item attributes no item has; known attributes: {known}."
                )

    def unknown_cross_attributes(self) -> list[tuple[str, str]]:
        """Explicit crosses whose attribute no item of the catalog has (empty when the
        catalog has no items: nothing to check against yet)."""
        if not self._crosses or len(self.catalog) == 0:
            return []
        known = set(CalloutFeatures(self.catalog, None).known_attributes())
        return [c for c in self._crosses if c[1] not in known]

    def cross_groups(self) -> list[str]:
        """Feature groups of the crosses that have fired in training (have weights)."""
        return [g for g in self._index.groups if _is_cross_group(g, self.catalog)]

    def never_fired_crosses(self) -> list[tuple[str, str]]:
        """Explicit crosses with no weight yet: the context key and the attribute never
        met in training (a typo, or a key clients do not send). Always empty with
        ``crosses=None``: there every pair that occurs fires by construction."""
        if not self._crosses:
            return []
        have = set(self._index.groups)
        return [c for c in self._crosses if f"{c[0]}x{c[1]}" not in have]

    # ------------------------------------------------------------------ properties
    @property
    def policy_version(self) -> int:
        """Incremented by every update, decay and refit."""
        return self._version

    @property
    def state(self) -> probit.ProbitState:
        """The current posterior (an immutable record)."""
        return self._state

    @property
    def feature_index(self) -> FeatureIndex:
        return self._index

    def prior_for(self, group: str) -> GroupPrior:
        """The prior new weights of ``group`` start from."""
        if group == BIAS_GROUP:
            return self.bias_prior
        hit = self.priors.get(group)
        if hit is not None:
            return hit
        if self.cross_prior is not None and _is_cross_group(group, self.catalog):
            return self.cross_prior
        return self.default_prior

    # ------------------------------------------------------------------ features
    def _ensure(self, keys: Sequence[tuple[str, str]]) -> IntArray:
        """Indices of features, registering new ones at their group's prior."""
        out = np.empty(len(keys), dtype=np.int64)
        new: list[str] = []
        for j, (g, v) in enumerate(keys):
            idx = self._index.get(g, v)
            if idx is None:
                idx = self._index.index(g, v)
                new.append(g)
            out[j] = idx
        if new:
            pm = np.array([self.prior_for(g).mean for g in new])
            pv = np.array([self.prior_for(g).var for g in new])
            self._state = probit.grow(self._state, len(new), prior_mean=pm, prior_var=pv)
        return out

    def _sync_catalog(self) -> None:
        self._features.sync()
        if self.catalog.version != self._catalog_seen:
            self._row_cache.clear()
            self._shapes.clear()
            self._blocks.clear()
            self._catalog_seen = self.catalog.version

    def _context(self, context: Mapping[str, Any]) -> ContextCode:
        return self._features.context(context)

    def _row_known(self, code: ContextCode, item_id: str) -> IntArray | None:
        """Indices of a row whose features are all registered, else None (read only)."""
        rk = (code.key, item_id)
        row = self._row_cache.get(rk)
        if row is not None:
            return row
        if item_id not in self.catalog:
            raise UnknownItemError(f"item_id == {item_id!r} is not in the catalog.")
        get = self._index.get
        idx = [get(g, v) for g, v in self._features.row(code, item_id)]
        if any(i is None for i in idx):
            return None
        row = np.asarray(idx, dtype=np.int64)
        if len(self._row_cache) > 16 * _MAX_CACHE:
            self._row_cache.clear()
        self._row_cache[rk] = row
        return row

    def _row_ensure(self, code: ContextCode, item_id: str) -> IntArray:
        """Indices of a row, registering its new features at their group prior."""
        row = self._row_known(code, item_id)
        if row is None:
            row = self._ensure(self._features.row(code, item_id))
        return row

    def rows(self, context: Mapping[str, Any], item_ids: Sequence[str]) -> SparseRows:
        """Feature rows of ``item_ids`` in ``context`` (registers new features)."""
        self._sync_catalog()
        code = self._context(context)
        return _csr([self._row_ensure(code, i) for i in item_ids])

    def _candidates(self, candidates: Sequence[str] | None) -> tuple[Any, list[str]]:
        if candidates is None:
            ids = self.catalog.active_ids()
            return None, ids
        ids = list(candidates)
        for i in ids:
            if i not in self.catalog:
                raise UnknownItemError(f"candidate item_id == {i!r} is not in the catalog.")
            if not self.catalog.is_active(i):
                raise DataValidationError(f"candidate item_id == {i!r} is retired.")
        if len(set(ids)) != len(ids):
            raise DataValidationError("candidates must not repeat an item_id.")
        return tuple(ids), ids

    def _block(self, context: Mapping[str, Any], candidates: Sequence[str] | None) -> _Block:
        """The mean scores and the Cholesky factor of the score covariance of the
        candidates in this context (cached per encoded context until the next update).

        The scores are ``X w`` with ``w ~ N(mean, diag(var))``, so the mean is a sum and
        the covariance ``sum_f var_f x_f x_f^T`` a sum over features. Features fall in
        three parts: the bias and the context's own features (shared by every
        candidate), the candidates' own features (independent of the context) and the
        crosses of each context value with the candidates' attribute values (one part
        per context value ``(key, value)``). Each part's mean vector and covariance are
        cached per candidate set, so a block for a context never seen before is a sum of
        a few cached arrays and one small Cholesky factorisation.
        """
        if self.catalog.version != self._catalog_seen:
            self._sync_catalog()
        enc = self._features.encode(context)
        # Blocks are dropped whenever the catalog or the posterior changes, so a cached
        # block's candidate list was validated against the current catalog.
        bkey = (enc, None if candidates is None else tuple(candidates))
        block = self._blocks.get(bkey)
        if block is None:
            block = self._new_block(bkey, candidates)
        return block

    def _new_block(self, bkey: tuple[Any, Any], candidates: Sequence[str] | None) -> _Block:
        """Build and cache the block of an encoded context (see :meth:`_block`)."""
        enc, ckey = bkey
        shape = self._shapes.get(ckey)
        if shape is None:
            shape = self._cand_shape(ckey, candidates)
        n = len(shape.ids)
        if n == 0:
            block = _Block([], np.zeros(0), np.zeros((0, 0)), np.zeros(0))
        else:
            total = self._block_sum(shape, enc)
            # The covariance is packed transposed, so this view is the covariance in
            # Fortran order: LAPACK factorises it in place, without copying it (the
            # factor is the same to the bit as that of a copy).
            L, info = _potrf(total[2 * n :].reshape(n, n).T, 1, 1, 1)
            if info != 0:  # singular: _cholesky adds jitter to a fresh sum
                L = _cholesky(self._block_sum(shape, enc)[2 * n :].reshape(n, n).T)
            block = _Block(shape.ids, total[:n], L, total[n : 2 * n])
        blocks = self._blocks
        if len(blocks) >= _MAX_CACHE:
            # Oldest first, one at a time: the freed arrays are the next block's memory.
            # Dropping all 4,096 at once returned their pages to the allocator and cost
            # about as much as building the blocks (page faults on the next 4,096).
            try:  # noqa: SIM105 - contextlib.suppress costs three Python calls
                blocks.popitem(last=False)
            except KeyError:  # another thread emptied it
                pass
        blocks[bkey] = block
        return block

    def _block_sum(self, shape: _Shape, enc: tuple[Field, ...]) -> FloatArray:
        """A new array: the candidates' own part plus the part of each context field,
        added left to right (as ``np.add.reduce`` over the stacked parts adds them, to
        the same bits, without stacking them first).

        The sum of all but the last field is cached per candidate set: fresh contexts
        that differ from a recent one only in their last field (by key order) cost one
        addition instead of one per field, with the same additions in the same order.
        """
        if len(enc) < 3:
            return self._field_sum(shape, enc)
        head = enc[:-1]
        prefix = shape.prefixes.get(head)
        if prefix is None:
            prefix = self._field_sum(shape, head)
            if len(shape.prefixes) >= _MAX_CACHE:
                shape.prefixes.clear()
            shape.prefixes[head] = prefix
        last = shape.fields.get(enc[-1])
        if last is None:
            last = self._field_part(shape, enc[-1])
        return prefix + last

    def _field_sum(self, shape: _Shape, enc: tuple[Field, ...]) -> FloatArray:
        """A new array: own part plus each field's part, left to right."""
        get = shape.fields.get
        total: FloatArray | None = None
        for f in enc:
            hit = get(f)
            if hit is None:
                hit = self._field_part(shape, f)
            if total is None:
                total = shape.own + hit
            else:
                total += hit  # in place, as np.add(..., out=total), without its keywords
        return shape.own.copy() if total is None else total

    def _moments(self, group: str, value: str) -> tuple[float, float]:
        """Posterior mean and variance of a feature; its group's prior when it is not
        registered (serving scores unseen features without writing)."""
        j = self._index.get(group, value)
        if j is None:
            pr = self.prior_for(group)
            return pr.mean, pr.var
        return float(self._state.mean[j]), float(self._state.var[j])

    def _cand_shape(self, ckey: tuple[str, ...] | None, candidates: Sequence[str] | None) -> _Shape:
        """The context-free part of a candidate set's blocks (cached until the next
        update or catalog change): the bias and the candidates' own features, and which
        candidate has which crossable attribute value."""
        hit = self._shapes.get(ckey)
        if hit is not None:
            return hit
        _, ids = self._candidates(candidates)
        n = len(ids)
        feats = self._features
        own_keys: dict[tuple[str, str], int] = {}
        own_rows = [[own_keys.setdefault(t, len(own_keys)) for t in feats.item(i)] for i in ids]
        X = np.zeros((n, len(own_keys)))
        for r, row in enumerate(own_rows):
            X[r, row] = 1.0
        mom = np.array([self._moments(g, v) for g, v in own_keys]).reshape(-1, 2)
        bm, bv = self._moments(BIAS_GROUP, "1")
        mean = X @ mom[:, 0] + bm
        cov = (X * mom[:, 1]) @ X.T + bv
        atoms: dict[tuple[str, str], int] = {}
        atom_rows = [[atoms.setdefault(t, len(atoms)) for t in feats.item_atoms(i)] for i in ids]
        A = np.zeros((n, len(atoms)))
        for r, row in enumerate(atom_rows):
            A[r, row] = 1.0
        shape = _Shape(ids, _pack(mean, cov), list(atoms), A, {}, {}, {})
        if len(self._shapes) > 64:
            self._shapes.clear()
        self._shapes[ckey] = shape
        return shape

    def _field_part(self, shape: _Shape, field: tuple[str, tuple[str, ...]]) -> FloatArray:
        """The sum of the parts of one context field's values (``interests`` with
        several values is one field): cached, so a block costs one lookup per field."""
        ck, vals = field
        parts = [self._atom_part(shape, ck, x) for x in vals]
        hit = np.add.reduce(parts) if len(parts) > 1 else parts[0]
        if len(shape.fields) > 16 * _MAX_CACHE:
            shape.fields.clear()
        shape.fields[field] = hit
        return hit

    def _atom_part(self, shape: _Shape, ck: str, x: str) -> FloatArray:
        """Mean vector and covariance (packed as in ``_Shape.own``) of the features of
        context value ``(ck, x)`` for a candidate set: its ``ctx.<ck>`` feature, shared
        by every candidate, and its crosses with the candidates' attribute values."""
        hit = shape.parts.get((ck, x))
        if hit is not None:
            return hit
        m0, v0 = self._moments(f"ctx.{ck}", x)
        cross = self._features.crosses_pair
        mom = np.array(
            [
                self._moments(f"{ck}x{a}", f"{x}|{y}") if cross(ck, a) else (0.0, 0.0)
                for a, y in shape.atoms
            ]
        ).reshape(-1, 2)
        A = shape.support
        mean = A @ mom[:, 0] + m0
        cov = (A * mom[:, 1]) @ A.T + v0
        hit = _pack(mean, cov)
        if len(shape.parts) > 16 * _MAX_CACHE:
            shape.parts.clear()
        shape.parts[(ck, x)] = hit
        return hit

    # ------------------------------------------------------------------ serving
    def _seed(self, seed: int | None, rng: RNGLike) -> int:
        if seed is not None:
            return seed if type(seed) is int and 0 <= seed < SEED_BOUND else check_seed(seed)
        if rng is None:
            bitgen = self._rng.bit_generator
            if type(bitgen) is np.random.PCG64:
                # What draw_seed's Generator.integers(0, 2**63) returns for a PCG64, a
                # tenth of its cost: Lemire's bounded draw on a power-of-two range is
                # the top 63 bits of one 64-bit output (tests/callouts pin the equality).
                return int(bitgen.random_raw()) >> 1
            return draw_seed(self._rng)
        return draw_seed(rng)

    def _thread_draw(self) -> tuple[memoryview | None, np.random.Generator, dict[int, Any]]:
        """This thread's decision generator, the view of its state bytes (None: set it
        through the public setter) and its per-candidate-count vectors for one draw."""
        try:
            draw: tuple[memoryview | None, np.random.Generator, dict[int, Any]]
            draw = self._local.draw
            return draw
        except AttributeError:
            pass
        bitgen = np.random.PCG64(0)
        _set_pcg_state(bitgen, 0)
        draw = (_pcg_state_bytes(bitgen), np.random.Generator(bitgen), {})
        self._local.draw = draw
        return draw

    def _reseed(self, seed: int) -> np.random.Generator:
        """This thread's decision generator, set to the state of ``seed`` (a bijection of
        the seed). The state is written straight into the PCG64's state bytes when that
        was verified to equal setting ``bit_generator.state`` (a quarter of the cost),
        else through the state setter. ``decide`` inlines this."""
        view, gen, _ = self._thread_draw()
        state = (seed * _SEED_MULT + _SEED_ADD) & _MASK128
        if view is None:
            _set_pcg_state(gen.bit_generator, state)
        else:
            view[:] = state.to_bytes(16, "little")
        return gen

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
        """Thompson-sample the top ``k`` of the candidates for one request.

        Parameters
        ----------
        context : dict
            Shopper context, e.g. ``{"member": False, "page": "video"}``; list values
            are multi-valued (interests).
        candidates : list of str, optional
            Eligible item ids (default: every active item).
        k : int
            Items to serve, without repeats, ``1 <= k <= n_candidates``.
        seed : int, optional
            The decision's seed in ``[0, 2**63)`` (what a replay passes).
        rng : int, Generator or None
            Source of the seed when ``seed`` is None (an int seeds a fresh generator;
            None: the recommender's own generator).
        with_propensity : bool
            Estimate each served item's propensity from ``propensity_draws`` draws.
        """
        # The body inlines _block, _seed's common case and _reseed: each call of a
        # Python method is a few percent of a decision.
        if type(context) is not dict and not isinstance(context, Mapping):
            raise DataValidationError(f"context must be a dict, got {type(context).__name__}.")
        if self.catalog._version != self._catalog_seen:  # the version property, unwrapped
            self._sync_catalog()
        bkey = (self._features.encode(context), None if candidates is None else tuple(candidates))
        block = self._blocks.get(bkey)
        if block is None:
            block = self._new_block(bkey, candidates)
        ids = block.item_ids
        n = len(ids)
        if type(k) is not int and (isinstance(k, bool) or not isinstance(k, np.integer)):
            raise DataValidationError(f"k == {k!r}, must be an integer in [1, {n}].")
        if not 1 <= k <= n:
            raise DataValidationError(
                f"k == {k!r}, must be an integer in [1, {n}] (the number of candidates)."
            )
        if seed is None and rng is None and self._raw is not None:
            seed = self._raw() >> 1  # as _seed draws it
        else:
            seed = self._seed(seed, rng)
        try:
            view, gen, vecs = self._local.draw
        except AttributeError:
            view, gen, vecs = self._thread_draw()
        if view is None:
            gen = self._reseed(seed)
        else:
            view[:] = ((seed * _SEED_MULT + _SEED_ADD) & _MASK128).to_bytes(16, "little")
        vec = vecs.get(n)
        if vec is None:
            if len(vecs) > 8:
                vecs.clear()
            vec = vecs[n] = (np.empty(n), np.empty(n))
        z, scores = vec  # this thread's: nothing returned refers to them
        gen.standard_normal(None, _F64, z)  # the values of standard_normal(n)
        # base + e * (L z), summed in this order (replays of logged seeds are bit-exact)
        block.chol.dot(z, scores)  # np.dot's computation, without its dispatcher
        if self.exploration != 1:
            scores *= self.exploration
        scores += block.base
        if k == 1:
            j = int(scores.argmax())
            if not with_propensity:
                served = [_served(ids[j], scores.item(j), None, None)]
                return _decision(new_decision_id(), served, self._version, seed)
            p = self._propensity(block, j, gen)
            served = [_served(ids[j], scores.item(j), p, p)]
            return _decision(new_decision_id(), served, self._version, seed)
        part = np.argpartition(-scores, k - 1)[:k]
        top = part[np.argsort(-scores[part], kind="stable")]
        if with_propensity:
            slot_p, set_p = self._propensities(block, top, gen)
            items = [
                _served(ids[j], scores.item(j), slot_p[r], set_p[r])
                for r, j in enumerate(top.tolist())
            ]
        else:
            items = [_served(ids[j], scores.item(j), None, None) for j in top.tolist()]
        return _decision(new_decision_id(), items, self._version, seed)

    def _draw_buffers(self, d: int, n: int) -> tuple[FloatArray, FloatArray]:
        """This thread's (d, n) buffers for the propensity draws and their scores."""
        local = self._local
        try:
            bufs = local.bufs
        except AttributeError:
            bufs = local.bufs = {}
        hit = bufs.get((d, n))
        if hit is None:
            if len(bufs) > 8:
                bufs.clear()
            hit = bufs[(d, n)] = (np.empty((d, n)), np.empty((d, n)))
        return hit

    def _draw_scores(self, block: _Block, gen: np.random.Generator) -> FloatArray:
        """The scores of ``propensity_draws`` further Thompson draws, one row each."""
        d = int(self.propensity_draws)
        Z, S = self._draw_buffers(d, block.base.shape[0])
        gen.standard_normal(None, _F64, Z)  # the values of standard_normal((d, n))
        np.matmul(Z, block.chol.T, out=S)
        if self.exploration != 1:
            S *= self.exploration
        S += block.base
        return S

    def _propensity(self, block: _Block, j: int, gen: np.random.Generator) -> float:
        """The propensity of serving candidate ``j`` alone (k = 1).

        The served draw counts as one of d + 1: a served item never gets propensity 0
        (an upward bias of at most 1 / (d + 1)).
        """
        S = self._draw_scores(block, gen)
        return (float(np.count_nonzero(S.argmax(1) == j)) + 1.0) / (S.shape[0] + 1)

    def _propensities(
        self, block: _Block, top: IntArray, gen: np.random.Generator
    ) -> tuple[list[float], list[float]]:
        """Slot and set propensities of the served ``top`` (k > 1), as ``_propensity``."""
        S = self._draw_scores(block, gen)
        d, n = S.shape
        k = top.shape[0]
        if k < n:
            part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), (d, n))
        order = np.argsort(-np.take_along_axis(S, part, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(part, order, axis=1)
        slot = ((ranked == top[None, :]).sum(axis=0) + 1.0) / (d + 1)
        inset = ((ranked[:, :, None] == top[None, None, :]).any(axis=1).sum(axis=0) + 1.0) / (d + 1)
        return slot.tolist(), inset.tolist()

    def decide_batch(
        self,
        contexts: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        *,
        n: int | None = None,
        candidates: Sequence[str] | None = None,
        k: int = 1,
        seed: int | None = None,
        rng: RNGLike = None,
    ) -> BatchDecision:
        """Thompson-sample decisions for many requests at once (no propensities).

        Parameters
        ----------
        contexts : list of dict, or one dict shared by ``n`` requests
        n : int, optional
            Number of requests when ``contexts`` is one dict.
        candidates, k, seed, rng
            As in :meth:`decide`; the candidate set is shared by the batch and one seed
            drives the whole batch.
        """
        if isinstance(contexts, Mapping):
            if n is None or n < 0:
                raise DataValidationError(f"n == {n!r}, must be >= 0 with a single context.")
            groups: dict[Any, tuple[Mapping[str, Any], list[int]]] = {0: (contexts, list(range(n)))}
            n_req = n
        else:
            n_req = len(contexts)
            # group by object identity first (cheap), then merge equal contexts
            by_id: dict[int, tuple[Mapping[str, Any], list[int]]] = {}
            for i, c in enumerate(contexts):
                hit = by_id.get(id(c))
                if hit is None:
                    by_id[id(c)] = (c, [i])
                else:
                    hit[1].append(i)
            groups = {}
            for c, rows_i in by_id.values():
                key = context_key(c)
                if key in groups:
                    groups[key][1].extend(rows_i)
                else:
                    groups[key] = (c, rows_i)
        ids = self._block(next(iter(groups.values()))[0], candidates).item_ids if groups else []
        n_c = len(ids) if groups else len(self._candidates(candidates)[1])
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n_c:
            raise DataValidationError(
                f"k == {k!r}, must be an integer in [1, {n_c}] (the number of candidates)."
            )
        seed = self._seed(seed, rng)
        gen = self._reseed(seed)
        chosen = np.empty((n_req, k), dtype=np.int64)
        out_scores = np.empty((n_req, k))
        Z = gen.standard_normal((n_req, n_c))  # one block of draws, sliced per context
        start = 0
        for ctx, rows_i in groups.values():
            block = self._block(ctx, candidates)
            m = len(rows_i)
            S = Z[start : start + m] @ block.chol.T
            if self.exploration != 1:
                S *= self.exploration
            S += block.base
            start += m
            if k == 1:
                top = S.argmax(axis=1)[:, None]
            else:
                part = np.argpartition(-S, k - 1, axis=1)[:, :k]
                order = np.argsort(-np.take_along_axis(S, part, axis=1), axis=1)
                top = np.take_along_axis(part, order, axis=1)
            ri = np.asarray(rows_i) if len(groups) > 1 else slice(None)
            chosen[ri] = top
            out_scores[ri] = np.take_along_axis(S, top, axis=1)
        return BatchDecision(ids, chosen, out_scores, self._version, seed)

    def click_rates(
        self,
        context: Mapping[str, Any] | None = None,
        level: float = 0.95,
        *,
        candidates: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Posterior click rate of each item with an equal-tailed credible interval.

        ``mean`` is the posterior predictive ``Phi(mu / sqrt(noise^2 + s^2))``; the
        interval is that of the click probability ``Phi(x.w / noise)`` under the
        posterior of ``x.w ~ N(mu, s^2)``. No exploration noise.

        Returns
        -------
        DataFrame with columns item_id, mean, lower, upper (one row per item)
        """
        if not 0 < level < 1:
            raise DataValidationError(f"level == {level}, must be in (0, 1).")
        block = self._block(context or {}, candidates)
        z = float(special.ndtri(0.5 + level / 2))
        sd = np.sqrt(block.score_var)
        import pandas as pd

        return pd.DataFrame(
            {
                "item_id": block.item_ids,
                "mean": special.ndtr(block.base / np.sqrt(self.noise**2 + block.score_var)),
                "lower": special.ndtr((block.base - z * sd) / self.noise),
                "upper": special.ndtr((block.base + z * sd) / self.noise),
            }
        )

    # ------------------------------------------------------------------ learning
    def _feedback_rows(self, feedback: Sequence[Feedback]) -> tuple[SparseRows, IntArray]:
        self._sync_catalog()
        rows: list[IntArray] = []
        y = np.empty(len(feedback), dtype=np.int64)
        for j, fb in enumerate(feedback):
            r = float(fb.reward)
            if not math.isfinite(r):
                raise DataValidationError(
                    f"feedback reward == {fb.reward!r} for item {fb.item_id!r}, must be finite."
                )
            if not isinstance(fb.context, Mapping):
                raise DataValidationError(
                    f"feedback context must be a dict, got {type(fb.context).__name__}."
                )
            rows.append(self._row_ensure(self._context(fb.context), fb.item_id))
            y[j] = 1 if r > 0 else 0
        return _csr(rows), y

    def _bump(self) -> None:
        self._version += 1
        self._blocks.clear()
        self._shapes.clear()  # posterior moments are cached per candidate set

    def update(self, feedback: Sequence[Feedback]) -> None:
        """Apply a batch of feedback (probit label: ``reward > 0``); bumps the version.

        Sequential mode is :func:`memberlab.bayes.probit.update` (same arithmetic, minus
        its input checks: rows built here are valid by construction).
        """
        if not feedback:
            return
        X, y = self._feedback_rows(feedback)
        if self.update_method == "parallel":
            self._state = probit.update_parallel(self._state, X, y)
        else:
            self._state = _sequential_update(self._state, X, y)
        self._bump()

    def decay(self, rate: float) -> None:
        """Relax every weight toward its prior by ``rate`` in [0, 1] (drift)."""
        self._state = probit.decay(self._state, rate)
        self._bump()

    def _group_arrays(self) -> tuple[IntArray, list[str]]:
        return self._index.group_ids(), self._index.groups

    def refit_priors(
        self,
        feedback_log: Sequence[Feedback],
        *,
        method: Literal["deconvolved", "naive"] = "deconvolved",
        source: Literal["shadow", "messages"] = "shadow",
        min_weights: int = 3,
        replay: bool = True,
    ) -> RefitResult:
        """Refit the empirical-Bayes group priors and retrain in hindsight.

        The priors are estimated from a wide-prior shadow model trained on
        ``feedback_log`` (``source="shadow"``, prior ``N(0, shadow_prior_var)``) or from
        the current model's likelihood messages (``source="messages"``, deconvolved
        only) - never from posterior means trained under the prior being estimated.
        Group means are pinned at 0 (the bias, with its fixed prior, carries the overall
        level; with one-hot coding group means and the bias are confounded); only group
        variances are refit. With ``replay=True`` the posterior is reset to the new
        priors and the log is replayed in order.

        Parameters
        ----------
        feedback_log : sequence of Feedback
            Every feedback the model has learned from, in order.
        method : {"deconvolved", "naive"}
        source : {"shadow", "messages"}
        min_weights : int
            Groups with fewer weights with data keep their current prior.
        replay : bool
            Retrain on ``feedback_log`` under the new priors.
        """
        if method not in ("deconvolved", "naive"):
            raise DataValidationError(f"method == {method!r}, must be 'deconvolved' or 'naive'.")
        if source not in ("shadow", "messages"):
            raise DataValidationError(f"source == {source!r}, must be 'shadow' or 'messages'.")
        X, y = self._feedback_rows(feedback_log)
        gids, names = self._group_arrays()
        fit, new = empirical_bayes_refit(
            self._state,
            X,
            y,
            gids,
            names,
            method=method,
            source=source,
            fixed_groups=[BIAS_GROUP],
            shadow_prior_var=float(self.shadow_prior_var),
            shadow_fixed_var=float(self.shadow_bias_var),
            shadow_sweeps=int(self.shadow_sweeps),
            prior_quantile=self.prior_quantile,
            min_weights=min_weights,
        )
        self.priors.update(new)
        pm, pv = self._prior_arrays()
        if replay:
            state = probit.init(
                self._state.n_features, prior_mean=pm, prior_var=pv, noise=self.noise
            )
            self._state = probit.update(state, X, y) if X.n_rows else state
        else:
            self._state = probit.set_prior(self._state, pm, pv, reset=False)
        self._bump()
        logger.info("refit %d group priors (%s), replayed %d rows", len(new), method, X.n_rows)
        return RefitResult(fit, new, X.n_rows if replay else 0, self._version)

    def _prior_arrays(self) -> tuple[FloatArray, FloatArray]:
        gids, names = self._group_arrays()
        prs = {n: self.prior_for(n) for n in names}
        return prior_arrays(gids, names, prs, self.default_prior)

    # ------------------------------------------------------------------ persistence
    @classmethod
    def _construct(cls, params: Mapping[str, Any]) -> CalloutRecommender:
        """A stored recommender loads even when a cross names an attribute its items
        lost (refusing typo crosses is for new recommenders, not for snapshots)."""
        token = _RESTORING.set(True)
        try:
            return cls(**params)
        finally:
            _RESTORING.reset(token)

    def _state_header(self) -> dict[str, Any]:
        return {
            "features": [[g, v] for g, v in self._index.keys()],  # noqa: SIM118
            "policy_version": self._version,
            "rng_state": self._rng.bit_generator.state,
        }

    def _state_arrays(self) -> dict[str, FloatArray]:
        s = self._state
        return {"mean": s.mean, "var": s.var, "prior_mean": s.prior_mean, "prior_var": s.prior_var}

    def _restore(self, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        index = FeatureIndex.from_keys((str(g), str(v)) for g, v in state["features"])
        n = len(index)
        for k in ("mean", "var", "prior_mean", "prior_var"):
            if k not in arrays or np.shape(arrays[k]) != (n,):
                raise DataValidationError(
                    f"callouts snapshot array {k!r} must have shape ({n},) (one per feature)."
                )
        self._index = index
        self._state = probit.from_arrays(arrays, float(self.noise))
        self._bias = self._index.index(BIAS_GROUP, "1")
        self._version = int(state["policy_version"])
        self._rng.bit_generator.state = state["rng_state"]
        self._row_cache.clear()
        self._shapes.clear()
        self._blocks.clear()

    @classmethod
    def _from_legacy(cls, data: bytes) -> CalloutRecommender | None:
        """Read a version-1 callouts snapshot (``MEMBERLAB-CALLOUTS`` magic)."""
        if not data.startswith(_MAGIC):
            return None
        try:
            off = len(_MAGIC)
            n = int.from_bytes(data[off : off + 8], "big")
            header = json.loads(data[off + 8 : off + 8 + n])
            version = header.get("schema_version")
            if version != _LEGACY_SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"snapshot has schema_version {version!r}; this release reads "
                    f"{SNAPSHOT_SCHEMA_VERSION} (and {_LEGACY_SCHEMA_VERSION})."
                )
            with np.load(io.BytesIO(data[off + 8 + n :]), allow_pickle=False) as z:
                arrays = {k: np.array(z[k], dtype=np.float64) for k in z.files}
            p = header["params"]
            rec = cls._construct(
                dict(
                    catalog=Catalog.from_json(header["catalog"]),
                    crosses=[(str(c[0]), str(c[1])) for c in p["crosses"]],
                    propensity_draws=p["n_propensity_draws"],
                    noise=p["noise"],
                    priors={k: GroupPrior(*v) for k, v in header["priors"].items()},
                    default_prior=GroupPrior(*p["default_prior"]),
                    bias_prior=GroupPrior(*p["bias_prior"]),
                    item_feature=p["item_feature"],
                    shadow_prior_var=p["shadow_prior_var"],
                    update_method=p["update_mode"],  # version-1 names
                )
            )
            rec._restore(
                {
                    "features": header["features"],
                    "policy_version": header["policy_version"],
                    "rng_state": header["rng_state"],
                },
                arrays,
            )
        except (SchemaVersionError, DataValidationError):
            raise
        except (
            KeyError,
            TypeError,
            ValueError,
            IndexError,
            OSError,
            EOFError,
            zipfile.BadZipFile,
        ) as exc:
            raise DataValidationError(f"callouts snapshot is malformed: {exc!r}") from exc
        return rec


def _is_cross_group(group: str, catalog: Catalog) -> bool:
    """Whether a feature group is a context-by-attribute cross (not the bias, the item
    id, a context value or an item attribute's own group)."""
    if group in (BIAS_GROUP, ITEM_GROUP) or group.startswith("ctx."):
        return False
    return group not in {spec.group(name) for name, spec in catalog.spec.items()}


@dataclass(frozen=True, slots=True)
class _Shape:
    """The context-free part of the blocks of one candidate set (see ``_block``)."""

    ids: list[str]
    own: FloatArray  # (2n + n*n,) bias + own features, packed by ``_pack``
    atoms: list[tuple[str, str]]  # distinct crossable (attribute, value) of the candidates
    support: FloatArray  # (n, len(atoms)) 1 where a candidate has the attribute value
    parts: dict[tuple[str, str], FloatArray]  # per context value, packed like ``own``
    fields: dict[tuple[str, tuple[str, ...]], FloatArray]  # per field: its values' sum
    prefixes: dict[tuple[Field, ...], FloatArray]  # all fields but the last: their sum


def _pack(mean: FloatArray, cov: FloatArray) -> FloatArray:
    """Mean scores, the covariance's diagonal, then the covariance transposed, in one
    array: parts add elementwise, the sum's diagonal is the score variances, and its
    last ``n * n`` entries are the covariance in Fortran order, as LAPACK takes it."""
    return np.concatenate([mean, np.diagonal(cov), cov.T.ravel()])


def _set_pcg_state(bitgen: np.random.BitGenerator, state: int) -> None:
    """Set a decision generator's PCG64 state through the public setter."""
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": _PCG_INC},
        "has_uint32": 0,
        "uinteger": 0,
    }


def _pcg_state_bytes(bitgen: np.random.PCG64) -> memoryview | None:
    """A writable view of the 16 bytes of ``bitgen``'s 128-bit state, or None.

    numpy's ``pcg64_state`` begins with a pointer to ``{state, inc}``, two 128-bit
    integers, stored as native ``__uint128_t`` where the compiler has one. Writing
    ``state.to_bytes(16, "little")`` through the view (one call, cheaper than two word
    writes) is used only after a check that it gives exactly the state the public
    setter gives, for two states, with the increment in place; any other layout
    (including a big-endian one) returns None (the caller then uses the setter).
    """
    # Only on the numpy majors whose pcg64_state layout is known (1.17 to 2.x): on an
    # unknown layout the first word might not be a pointer, and writing through it
    # would not fail cleanly.
    if np.__version__.split(".")[0] not in ("1", "2"):
        return None
    try:
        import ctypes

        ptr = ctypes.c_void_p.from_address(bitgen.ctypes.state_address).value
        if not ptr:
            return None
        view = memoryview((ctypes.c_uint8 * 16).from_address(ptr)).cast("B")
        saved = bitgen.state
        for probe in (0x0123456789ABCDEF_FEDCBA9876543210, _SEED_ADD):
            view[:] = probe.to_bytes(16, "little")
            got = bitgen.state
            if got["state"] != {"state": probe, "inc": saved["state"]["inc"]}:
                bitgen.state = saved
                return None
        bitgen.state = saved
    except (AttributeError, TypeError, ValueError, OSError):
        return None
    return view


def _cholesky(cov: FloatArray) -> FloatArray:
    """Lower Cholesky factor, with a little jitter when ``cov`` is singular.

    LAPACK's ``dpotrf`` directly, with positional arguments (``lower=1``; ``clean``
    defaults to 1, zeroing the upper triangle): numpy's wrapper costs about three times
    as much on the 20 x 20 matrices a decision factorises (same factor to the bit).
    """
    L, info = _potrf(cov, 1)
    if info == 0:
        return L
    n = cov.shape[0]
    scale = float(np.max(np.diag(cov))) if n else 1.0
    for jitter in (1e-12, 1e-9, 1e-6):
        L, info = _potrf(cov + (jitter * scale) * np.eye(n), 1)
        if info == 0:
            return L
    w, v = np.linalg.eigh(cov)
    return np.asarray(v * np.sqrt(np.clip(w, 0.0, None)), dtype=np.float64)


def _sequential_update(state: probit.ProbitState, X: SparseRows, y: IntArray) -> probit.ProbitState:
    mean = state.mean.copy()
    var = state.var.copy()
    floor = state.prior_var * probit._MIN_VAR_FRACTION
    noise2 = state.noise**2
    ptr, ind, dat = X.indptr.tolist(), X.indices, X.data
    for i, label in enumerate(y.tolist()):
        a, b = ptr[i], ptr[i + 1]
        probit._update_inplace(mean, var, floor, noise2, ind[a:b], dat[a:b], 1.0 if label else -1.0)
    return probit.ProbitState(mean, var, state.prior_mean, state.prior_var, state.noise)


def _csr(rows: Sequence[IntArray]) -> SparseRows:
    """Binary CSR rows from index arrays."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    if rows:
        np.cumsum([r.shape[0] for r in rows], out=indptr[1:])
        indices = np.concatenate(rows).astype(np.int64, copy=False)
    else:
        indices = np.zeros(0, dtype=np.int64)
    return SparseRows(indptr, indices, np.ones(indices.shape[0]))
