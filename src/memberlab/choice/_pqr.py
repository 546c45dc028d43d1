"""PQR: inverse reinforcement learning with an anchor action (Geng et al., ICML 2020).

With the anchor's reward known (``r(s, a0) = anchor_reward``, 0 by default):

- (P) estimate the policy ``pi(a | s)``;
- (Q) the anchor's Q solves ``Q(s, a0) = r(s, a0) + beta E[Q(s', a0) - log pi(a0 | s') |
  s, a0]``; then ``Q(s, a) = Q(s, a0) + log pi(a | s) - log pi(a0 | s)``;
- (R) ``r(s, a) = Q(s, a) - beta E[V(s') | s, a]`` with ``V(s) = Q(s, a0) - log pi(a0 |
  s)``, by regression over observed transitions.

States where the anchor is infeasible but one action is (a member locked into an annual
term) have their reward pinned to 0 and ``V(s) = Q(s, forced)``; states where the anchor
is infeasible and several actions are feasible are not identified and raise
:class:`~memberlab.AnchorSupportError`.

Three estimators share these steps:

- :class:`StructuralPQR` (``"pqr"``, the default): tabular P and Q steps on a discrete
  state space, and an R step that regresses the per-cell tabular targets on the same
  structural reward the CCP and NFXP baselines use
  (:func:`~memberlab.choice.linear_features`: per non-anchor action an intercept, one-hot
  categorical and linear numeric state terms), with empirical-Bayes cell effects;
- :class:`TabularPQR` (``"pqr-tabular"``): every (state, action) cell on its own;
- :class:`PQR` (``"pqr-fa"``): pluggable learners for each step, for large or
  continuous state spaces.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import clone

from memberlab._errors import AnchorSupportError, ConvergenceWarning, DataValidationError
from memberlab._rng import RNGLike, as_generator
from memberlab._typing import BoolArray, FloatArray, IntArray
from memberlab.choice._panel import Panel, estimate_transitions, panel_info
from memberlab.choice._results import ChoiceResults
from memberlab.choice._solve import small_blas

__all__ = ["PQR", "StructuralPQR", "TabularPQR", "pqr_tabular"]

logger = logging.getLogger(__name__)


def _selection(feasible: BoolArray, anchor: int) -> tuple[BoolArray, IntArray]:
    af = feasible[:, anchor]
    single = feasible.sum(axis=1) == 1
    bad = ~af & ~single
    if bad.any():
        idx = np.flatnonzero(bad)[:5].tolist()
        raise AnchorSupportError(
            f"the anchor is infeasible in {int(bad.sum())} state(s) where several actions are "
            f"feasible (state codes {idx}...); rewards there are not identified."
        )
    sel = np.where(af, anchor, np.argmax(feasible, axis=1))
    return af, sel.astype(np.int64)


def pqr_tabular(
    policy: FloatArray,
    transitions: FloatArray,
    feasible: BoolArray,
    anchor: int,
    discount: float,
    *,
    anchor_reward: float | FloatArray = 0.0,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Exact tabular PQR: three linear steps.

    Parameters
    ----------
    policy : ndarray of shape (n_states, n_actions)
        Choice probabilities, positive where feasible.
    transitions : ndarray of shape (n_actions, n_states, n_states)
    feasible : ndarray of bool, shape (n_states, n_actions)
    anchor : int
        Code of the anchor action.
    discount : float in [0, 1)
    anchor_reward : float or ndarray of shape (n_states,)

    Returns
    -------
    rewards : ndarray of shape (n_states, n_actions), 0 where infeasible
    q : ndarray of shape (n_states, n_actions), ``-inf`` where infeasible
    values : ndarray of shape (n_states,)
    """
    n_states = policy.shape[0]
    af, sel = _selection(feasible, anchor)
    p0 = policy[:, anchor]
    if (af & ~(p0 > 0)).any():
        idx = np.flatnonzero(af & ~(p0 > 0))[:5].tolist()
        raise AnchorSupportError(
            f"pi(anchor | s) == 0 in states {idx} where the anchor is feasible; the anchor "
            "needs support wherever it can be chosen."
        )
    logp0 = np.where(af, np.log(np.where(af, p0, 1.0)), 0.0)
    r_sel = np.where(af, np.broadcast_to(anchor_reward, (n_states,)), 0.0)
    p_sel = transitions[sel, np.arange(n_states)]
    rhs = r_sel - discount * p_sel @ logp0
    w = scipy.linalg.solve(np.eye(n_states) - discount * p_sel, rhs)
    values = w - logp0
    with np.errstate(divide="ignore"):
        logpol = np.where(feasible, np.log(np.where(feasible, policy, 1.0)), -np.inf)
    q = np.where(
        af[:, None], w[:, None] + logpol - logp0[:, None], np.where(feasible, w[:, None], -np.inf)
    )
    cont = discount * np.einsum("ast,t->sa", transitions, values)
    rewards = np.where(feasible, q - cont, 0.0)
    rewards[af, anchor] = r_sel[af]
    return rewards, q, values


def _frequency_policy(
    counts: FloatArray, feasible: BoolArray, smoothing: float, clip: float
) -> FloatArray:
    c = np.where(feasible, counts + smoothing, 0.0)
    tot = c.sum(axis=1, keepdims=True)
    n_feas = feasible.sum(axis=1, keepdims=True)
    pol = np.where(tot > 0, c / np.where(tot > 0, tot, 1.0), feasible / np.maximum(n_feas, 1))
    pol = np.where(feasible, np.maximum(pol, clip), 0.0)
    return np.asarray(pol / pol.sum(axis=1, keepdims=True))


def _choice_loglik(panel: Panel, policy: FloatArray) -> float:
    p = policy[panel.state, panel.action]
    return float(np.log(np.maximum(p, 1e-300)).sum())


def _transition_loglik(panel: Panel, transitions: FloatArray) -> float:
    ok = panel.next_state >= 0
    p = transitions[panel.action[ok], panel.state[ok], panel.next_state[ok]]
    return float(np.log(np.maximum(p, 1e-300)).sum())


def _check_hyper(discount: float, clip: float) -> None:
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount == {discount}, must be in [0, 1).")
    if not 0.0 < clip < 0.5:
        raise ValueError(f"clip == {clip}, must be in (0, 0.5).")


def check_anchor_support(
    panel: Panel,
    anchor: int,
    counts: FloatArray,
    policy: FloatArray,
    *,
    min_anchor_share: float = 0.02,
    max_unsupported: float = 0.05,
    support_min_count: int = 30,
) -> None:
    """Raise :class:`AnchorSupportError` where the anchor has no support in the data.

    A state is unsupported if the anchor is feasible there and never chosen among at least
    ``support_min_count`` decisions, or its estimated ``pi(a0 | s) < min_anchor_share /
    10``; fails if more than ``max_unsupported`` of the decisions in anchor-feasible
    states sit in unsupported states.
    """
    af = panel.feasible[:, anchor]
    label = panel.actions[anchor]
    n_dec = counts.sum(axis=1)
    in_af = af & (n_dec > 0)
    total = float(n_dec[in_af].sum())
    if total == 0:
        raise AnchorSupportError(f"no decision in a state where {label!r} is feasible.")
    never = in_af & (counts[:, anchor] == 0) & (n_dec >= support_min_count)
    thin = in_af & (policy[:, anchor] < min_anchor_share / 10)
    bad = never | thin
    frac = float(n_dec[bad].sum()) / total
    if frac > max_unsupported:
        rows = panel.states.iloc[np.flatnonzero(bad)[:3]].to_dict("records")
        raise AnchorSupportError(
            f"the anchor {label!r} has no support for {frac:.1%} of decisions "
            f"(max_unsupported={max_unsupported}), e.g. in states {rows}: it is never "
            "chosen there or its estimated probability is below "
            f"{min_anchor_share / 10:g}. PQR needs the anchor chosen wherever it is "
            "feasible; choose another anchor or pool states."
        )


class TabularPQR:
    """Tabular PQR on a discrete state space: every (state, action) cell on its own.

    Results carry ``estimator="pqr-tabular"``. With the true policy and transitions it
    recovers the (normalised) rewards to machine precision; on data, cells chosen a few
    times get noisy rewards and cells never chosen get none worth the name:
    :class:`StructuralPQR` (the default ``"pqr"``) shares a structural reward instead.

    Parameters
    ----------
    anchor : Any
        Label of the anchor action (reward known).
    discount : float in [0, 1)
    anchor_reward : float, default 0
    smoothing : float, default 0.5
        Pseudo-count added to each feasible action's count before the policy estimate
        (0.5: the Jeffreys prior; 0 needs the anchor chosen in every observed state where
        it is feasible).
    clip : float, default 1e-6
        Probabilities are clipped below at ``clip`` and renormalised.
    transitions : ndarray of shape (n_actions, n_states, n_states), optional
        Known transitions on the panel's state table; estimated by frequency if not
        given.

    Raises
    ------
    AnchorSupportError
        From ``fit``, where the anchor has no support: with ``smoothing=0`` if it is never
        chosen in an observed state where it is feasible; otherwise as
        :func:`check_anchor_support` (defaults).
    """

    _name = "pqr-tabular"

    def __init__(
        self,
        *,
        anchor: Any,
        discount: float,
        anchor_reward: float = 0.0,
        smoothing: float = 0.5,
        clip: float = 1e-6,
        transitions: FloatArray | None = None,
    ) -> None:
        self.anchor = anchor
        self.discount = discount
        self.anchor_reward = anchor_reward
        self.smoothing = smoothing
        self.clip = clip
        self.transitions = transitions

    def fit(self, panel: Panel, *, policy: FloatArray | None = None) -> ChoiceResults:
        """Fit on a panel; ``policy`` (n_states, n_actions) overrides the frequencies."""
        with small_blas(panel.n_states):
            return self._fit(panel, policy)

    def _pq_steps(
        self, panel: Panel, policy: FloatArray | None
    ) -> tuple[int, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """Validate, then the tabular P and Q steps (and the tabular R step).

        Returns ``(anchor code, policy, transitions, tabular rewards, q, values)``.
        """
        _check_hyper(self.discount, self.clip)
        if not self.smoothing >= 0:
            raise ValueError(f"smoothing == {self.smoothing}, must be >= 0.")
        a0 = panel.check_anchor(self.anchor)
        counts = panel.counts()
        feas = panel.feasible
        af = feas[:, a0]
        seen = counts.sum(axis=1) > 0
        no_anchor = af & seen & (counts[:, a0] == 0)
        if self.smoothing == 0 and policy is None and no_anchor.any():
            rows = panel.states.iloc[np.flatnonzero(no_anchor)[:3]].to_dict("records")
            raise AnchorSupportError(
                f"anchor {self.anchor!r} never chosen in {int(no_anchor.sum())} observed "
                f"state(s) where it is feasible, e.g. {rows}; pass smoothing > 0 or pool "
                "states."
            )
        if self.transitions is None:
            trans, _ = estimate_transitions(panel)
        else:
            trans = np.asarray(self.transitions, dtype=float)
            want = (panel.n_actions, panel.n_states, panel.n_states)
            if trans.shape != want:
                raise DataValidationError(f"transitions has shape {trans.shape}, must be {want}.")
        if policy is None:
            pol = _frequency_policy(counts, feas, self.smoothing, self.clip)
            check_anchor_support(panel, a0, counts, pol)
        else:
            pol = np.asarray(policy, dtype=float)
        rewards, q, values = pqr_tabular(
            pol, trans, feas, a0, self.discount, anchor_reward=self.anchor_reward
        )
        return a0, pol, trans, rewards, q, values

    def _fit(self, panel: Panel, policy: FloatArray | None) -> ChoiceResults:
        a0, pol, trans, rewards, q, values = self._pq_steps(panel, policy)
        ll = _choice_loglik(panel, pol) + _transition_loglik(panel, trans)
        return fit_results(
            panel,
            a0,
            anchor_reward=self.anchor_reward,
            discount=self.discount,
            estimator=self._name,
            feasible=panel.feasible,
            rewards=rewards,
            q=q,
            policy=pol,
            values=values,
            transitions=trans,
            counts=panel.counts(),
            loglik=ll,
            converged=True,
        )


def _wls(x: FloatArray, y: FloatArray, w: FloatArray) -> FloatArray:
    sw = np.sqrt(w)
    return np.asarray(np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0], dtype=float)


# median of a chi-square with one degree of freedom
_CHI2_1_MEDIAN = 0.454936423119572


def _tau2(x: FloatArray, y: FloatArray, v: FloatArray, *, robust: bool) -> float:
    """Between-cell variance ``tau^2`` of a random-effects regression (Paule-Mandel).

    The ``tau^2`` at which the standardised squared residuals ``(y - x theta)^2 / (v +
    tau^2)``, with ``theta`` the weighted least-squares fit under weights ``1 / (v +
    tau^2)``, have their expected size: sum equal to the residual degrees of freedom
    (Paule and Mandel, 1982), or with ``robust=True`` median equal to a chi-square(1)'s
    median (insensitive to cells whose sampling variance ``v`` is understated).
    Bisection; 0 when the residuals are no larger than ``v`` explains.
    """
    dof = len(y) - int(np.linalg.matrix_rank(x))
    if dof <= 0:
        return 0.0

    def excess(t: float) -> float:
        w = 1.0 / (v + t)
        z = w * (y - x @ _wls(x, y, w)) ** 2
        return float(np.median(z)) - _CHI2_1_MEDIAN if robust else float(z.sum()) - dof

    if excess(0.0) <= 0:
        return 0.0
    hi = float(np.var(y)) + 1e-12
    while excess(hi) > 0 and hi < 1e12:
        hi *= 4.0
    lo = 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-6 * hi:
            break
    return 0.5 * (lo + hi)


def _cell_variances(
    panel: Panel,
    a0: int,
    counts: FloatArray,
    transitions: FloatArray,
    q: FloatArray,
    values: FloatArray,
    smoothing: float,
    discount: float,
) -> tuple[FloatArray, FloatArray]:
    """Per-cell observed transitions and the sampling variance of the tabular reward.

    First-order (delta method) variance of ``r(s, a) = W(s) + log pi(a|s) - log
    pi(a0|s) - beta mean V(s')`` treating errors in different states as independent:
    multinomial variance of the log odds; the variance of the mean of ``beta V(s')`` over
    the cell's observed transitions (pooled within-cell variance per action); the variance
    of the anchor's ``W(s)`` and of ``V(s')`` at next states, propagated through the
    anchor's own contraction. ``W(s)`` at states without an anchor transition (copied from
    a neighbour) get the variance of ``W`` across states.

    Returns
    -------
    n_transitions : ndarray of shape (n_states, n_actions)
    variance : ndarray of shape (n_states, n_actions), ``inf`` where no transition
    """
    feas = panel.feasible
    n_s, n_a = feas.shape
    af, sel = _selection(feas, a0)
    ok = panel.next_state >= 0
    s, a, s1 = panel.state[ok], panel.action[ok], panel.next_state[ok]
    m = np.zeros((n_s, n_a))
    np.add.at(m, (s, a), 1.0)
    bv = discount * values[s1]
    sum1 = np.zeros((n_s, n_a))
    sum2 = np.zeros((n_s, n_a))
    np.add.at(sum1, (s, a), bv)
    np.add.at(sum2, (s, a), bv**2)
    mean = sum1 / np.maximum(m, 1.0)
    ss = np.maximum(sum2 - m * mean**2, 0.0)
    dof = np.maximum(m - 1.0, 0.0).sum(axis=0)
    pooled = ss.sum(axis=0) / np.maximum(dof, 1.0)
    with np.errstate(divide="ignore"):
        t_var = np.where(m > 0, pooled[None, :] / np.maximum(m, 1.0), np.inf)
    nf = feas.sum(axis=1)
    c = smoothing
    n0 = counts[:, a0]
    tot = counts.sum(axis=1)
    with np.errstate(divide="ignore"):
        var_lp0 = np.where(
            af,
            np.maximum(
                1.0 / np.maximum(n0 + c, 1e-12) - 1.0 / np.maximum(tot + nf * c, 1e-12), 0.0
            ),
            0.0,
        )
    rows = np.arange(n_s)
    t_sel = t_var[rows, sel]
    have = np.isfinite(t_sel)
    w_sel = q[rows, sel]
    prior = float(np.var(w_sel[have])) if have.sum() > 1 else 1.0
    u_w = np.where(have, t_sel, prior)
    p2 = transitions[sel, rows] ** 2
    b2 = discount**2
    var_w = scipy.linalg.solve(np.eye(n_s) - b2 * p2, u_w + b2 * p2 @ var_lp0)
    var_v = var_w + var_lp0
    log_odds = 1.0 / np.maximum(counts + c, 1e-12) + (1.0 / np.maximum(n0 + c, 1e-12))[:, None]
    nxt = b2 * np.einsum("ast,t->sa", transitions**2, var_v)
    var = log_odds + t_var + var_w[:, None] + nxt
    return m, var


def _model_count_variance(
    var: FloatArray, counts: FloatArray, policy: FloatArray, a0: int, smoothing: float
) -> FloatArray:
    """``var`` with its log-odds part averaged with that at model-expected counts.

    ``var`` (from :func:`_cell_variances`) holds ``1 / (n(s,a) + c) + 1 / (n(s,a0) + c)``
    for the log odds; this replaces it by the mean of that and ``1 / (e(s,a) + 1/2) +
    1 / (e(s,a0) + 1/2)`` with ``e = n(s) policy(a|s)`` the counts a model expects
    (Jeffreys' 1/2 bounds the variance of cells the model deems very rare).
    """
    c = smoothing
    observed = 1.0 / np.maximum(counts + c, 1e-12) + 1.0 / np.maximum(counts[:, [a0]] + c, 1e-12)
    expected = counts.sum(axis=1, keepdims=True) * policy
    model = 1.0 / (expected + 0.5) + 1.0 / (expected[:, [a0]] + 0.5)
    return np.asarray(var - observed + 0.5 * (observed + model), dtype=float)


class StructuralPQR(TabularPQR):
    """PQR with tabular P and Q steps and a structural reward: the default ``"pqr"``.

    The R step regresses the tabular targets ``Q(s, a) - beta mean V(s')`` of each
    observed (state, non-anchor action) cell on reward features, the same specification
    as the CCP and NFXP baselines (:func:`~memberlab.choice.linear_features` by default:
    per non-anchor action an intercept, one-hot categorical and linear numeric state
    terms; single-action states pinned at 0), as a random-effects regression::

        target(s, a) = features(s, a) @ theta + u(s, a) + e(s, a),
        u ~ (0, tau^2),  e ~ (0, v(s, a)),

    with ``v`` the cell's first-order sampling variance (see Notes) and ``tau^2`` the
    misspecification variance. ``theta`` is the weighted least-squares fit with weights
    ``1 / (v + tau^2)`` (in two stages: the second stage's ``v`` averages the log odds'
    variance at the cell's own counts with that at the counts the first-stage model
    expects, as a cell's own counts are correlated with its target's error),
    ``tau^2`` by Paule-Mandel: with little data these are close to
    the cells' observation counts (occupancy weights, efficient under a correct
    specification); with much data they become equal across cells (the unweighted
    projection, which minimises the error over all pairs). The reward of an observed cell
    is then the empirical-Bayes prediction ``features @ theta + tau^2 / (tau^2 + v)
    (target - features @ theta)`` with the robust (median) Paule-Mandel ``tau^2``, so
    well-observed cells follow their own data where the specification is off and cells
    whose ``v`` is understated do not; cells never observed (or with
    ``shrinkage=False``, every cell) get ``features @ theta``.

    Parameters
    ----------
    anchor : Any
        Label of the anchor action.
    discount : float in [0, 1)
    anchor_reward : float, default 0
    features : callable, optional
        ``features(panel) -> (array (n_states, n_actions, n_params), names)`` with the
        anchor's features zero, as for :class:`~memberlab.choice.CCP`;
        :func:`~memberlab.choice.linear_features` by default.
    shrinkage : bool, default True
        Add the empirical-Bayes cell effects; ``False`` gives the pure structural reward.
    smoothing : float, default 0.05
        Pseudo-count of the P step, as :class:`TabularPQR`. Smaller than tabular PQR's
        0.5: here the variance of sparse cells is handled by the weights, while the
        smoothing's bias (it pulls rarely chosen probabilities toward uniform, and the
        anchor's ``log pi`` enters every continuation value) is shared by many cells and
        does not average out. Measured on the membership environment (6-10 seeds): the
        all-pairs error falls from 0.5 to 0.05 by 8% at 10^4 and 10^5 member-months and
        the occupancy-weighted error is unchanged.
    clip : float, default 1e-6
    transitions : ndarray of shape (n_actions, n_states, n_states), optional

    Notes
    -----
    Results carry ``estimator="pqr"``, ``params`` (``theta``), ``se`` (random-effects
    covariance ``(X' W X)^{-1}``; the first stages' noise enters only through ``v``),
    ``param_names``, ``info["tau2"]`` (cell effects) and ``info["tau2_weights"]``.
    ``q``, ``policy`` and ``values`` are those of the model solved under the estimated
    rewards (as for CCP and NFXP), and ``loglik`` the choices' log-likelihood under it
    plus the transitions'.

    The sampling variance ``v`` of a cell's target is a delta-method approximation that
    treats errors in different states as independent: the multinomial variance of the
    log odds ``log pi(a|s) - log pi(a0|s)``, the variance of the mean of ``beta V(s')``
    over the cell's observed transitions, and the variances of the anchor's ``W(s)`` and
    of ``V(s')`` propagated through the anchor's contraction.
    """

    _name = "pqr"

    def __init__(
        self,
        *,
        anchor: Any,
        discount: float,
        anchor_reward: float = 0.0,
        features: Any = None,
        shrinkage: bool = True,
        smoothing: float = 0.05,
        clip: float = 1e-6,
        transitions: FloatArray | None = None,
    ) -> None:
        super().__init__(
            anchor=anchor,
            discount=discount,
            anchor_reward=anchor_reward,
            smoothing=smoothing,
            clip=clip,
            transitions=transitions,
        )
        self.features = features
        self.shrinkage = shrinkage

    def _first_stage_policy(
        self, feats: FloatArray, theta: FloatArray, trans: FloatArray, feas: BoolArray, a0: int
    ) -> FloatArray:
        """The policy of the model solved under the first-stage structural rewards."""
        from memberlab.choice._solve import solve_values

        rewards = np.where(feas, feats @ theta, 0.0)
        rewards[feas[:, a0], a0] = self.anchor_reward
        return np.asarray(solve_values(rewards, trans, feas, self.discount).policy, dtype=float)

    def _fit(self, panel: Panel, policy: FloatArray | None) -> ChoiceResults:
        # imported here: _parametric imports this module
        from memberlab.choice._parametric import _features
        from memberlab.choice._solve import solve_values

        a0, _, trans, tab, q, values = self._pq_steps(panel, policy)
        feats, names = _features(panel, self.anchor, self.features)
        feas = panel.feasible
        counts = panel.counts()
        m, var = _cell_variances(
            panel, a0, counts, trans, q, values, float(self.smoothing), self.discount
        )
        af = feas[:, a0]
        cells = (m > 0) & feas & (af & (feas.sum(axis=1) > 1))[:, None]
        cells[:, a0] = False
        si, ai = np.nonzero(cells)
        x, y, v = feats[si, ai], tab[si, ai], var[si, ai]
        if len(y) == 0:
            raise AnchorSupportError(
                "no observed transition after a non-anchor action in a state where the "
                "anchor is feasible; the rewards cannot be estimated."
            )
        # theta in two stages: the log-odds part of a cell's own v correlates with its
        # target error (a rare action chosen more often than its probability has both an
        # upward-biased log odds and a smaller v, so more weight); the second stage's
        # weights average it with the Jeffreys log-odds variance at the counts the
        # first-stage structural model expects. The cell effects keep the cell's own v.
        theta = _wls(x, y, 1.0 / (v + _tau2(x, y, v, robust=False)))
        v_theta = _model_count_variance(
            var,
            counts,
            self._first_stage_policy(feats, theta, trans, feas, a0),
            a0,
            float(self.smoothing),
        )[si, ai]
        # weights: Paule-Mandel tau^2 (they tend to equal as data grow: the all-pairs
        # projection); cell effects: the robust median version (a few cells with
        # understated v must not let noisy tabular targets through)
        tau2_w = _tau2(x, y, v_theta, robust=False)
        tau2 = _tau2(x, y, v, robust=True)
        wts = 1.0 / (v_theta + tau2_w)
        theta = _wls(x, y, wts)
        cov = np.asarray(np.linalg.pinv((x * wts[:, None]).T @ x), dtype=float)
        rewards = np.where(feas, feats @ theta, 0.0)
        if self.shrinkage and tau2 > 0:
            fitted = rewards[si, ai]
            rewards[si, ai] = fitted + tau2 / (tau2 + v) * (y - fitted)
        rewards[af, a0] = self.anchor_reward
        sol = solve_values(rewards, trans, feas, self.discount)
        with np.errstate(divide="ignore"):
            logp = np.where(feas, np.log(np.maximum(sol.policy, 1e-300)), 0.0)
        ll = float((counts * logp).sum()) + _transition_loglik(panel, trans)
        return fit_results(
            panel,
            a0,
            anchor_reward=self.anchor_reward,
            discount=self.discount,
            estimator=self._name,
            feasible=feas,
            rewards=rewards,
            q=sol.q,
            policy=sol.policy,
            values=sol.values,
            transitions=trans,
            counts=counts,
            loglik=ll,
            converged=bool(sol.converged),
            params=theta,
            se=np.sqrt(np.abs(np.diag(cov))),
            param_names=list(names),
            info={
                "tau2": tau2,
                "tau2_weights": tau2_w,
                "n_cells": len(y),
                "shrinkage": bool(self.shrinkage),
            },
        )


def _fit_weighted(model: Any, x: FloatArray, y: Any, w: FloatArray) -> Any:
    """Fit with sample weights where the learner takes them, else by repeating rows.

    A scikit-learn Pipeline takes weights only through its last step
    (``<step>__sample_weight``).
    """
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import has_fit_parameter

    if isinstance(model, Pipeline):
        name, last = model.steps[-1]
        if last != "passthrough" and has_fit_parameter(last, "sample_weight"):
            return model.fit(x, y, **{f"{name}__sample_weight": w})
    else:
        try:
            return model.fit(x, y, sample_weight=w)
        except TypeError:
            pass
    reps = np.maximum(np.round(w).astype(np.int64), 1)
    return model.fit(np.repeat(x, reps, axis=0), np.repeat(np.asarray(y), reps, axis=0))


class PQR:
    """PQR with function approximation: pluggable scikit-learn learners for P, Q and R.

    Parameters
    ----------
    anchor : Any
        Label of the anchor action.
    discount : float in [0, 1)
    policy_learner : classifier, optional
        Fitted on (state features, action); default
        ``HistGradientBoostingClassifier(max_iter=100, learning_rate=0.2,
        min_samples_leaf=2)`` (``min_samples_leaf=20`` when states are nearly unique,
        fewer than 5 decisions per state).
    q_learner : regressor, optional
        Fitted Q iteration of the anchor's Q; default ``ExtraTreesRegressor(n_estimators=
        10, min_samples_leaf=1)``.
    reward_learner : regressor, optional
        One copy per non-anchor action; default ``ExtraTreesRegressor(n_estimators=25,
        min_samples_leaf=1)``.
    calibration : {None, "sigmoid", "isotonic"}, default None
        Wrap the policy learner in :class:`sklearn.calibration.CalibratedClassifierCV`.
    clip : float, default 1e-3
        Probabilities clipped below at ``clip`` and renormalised over feasible actions.
    n_q_iter : int, default 300
        Maximum fitted-Q iterations (frozen targets within each).
    q_tol : float, default 1e-5
        Stop when ``max |W_{k+1} - W_k| < q_tol * (1 + max |W_k|)``.
    min_anchor_share : float, default 0.02
        Fail (:class:`AnchorSupportError`) if more than ``max_unsupported`` of decisions
        in anchor-feasible states sit where the fitted ``pi(a0 | s) < min_anchor_share /
        10`` or where the anchor was never chosen among at least ``support_min_count``
        decisions.
    max_unsupported : float, default 0.05
    support_min_count : int, default 30
    transitions_max_states : int, default 5000
        Estimate a frequency transition model (for counterfactuals) when the panel has
        at most this many distinct states.
    n_threads : int or None, default 1
        Threads for the learners' OpenMP and BLAS pools during ``fit`` (one by default:
        the fits run on aggregated states and oversubscription on a busy machine costs
        far more than it gains); ``None`` leaves the pools alone.
    rng : int, Generator or None
        Seeds the default learners.

    Notes
    -----
    Rows are aggregated by distinct state before each fit (weights are counts), which is
    exact for squared and log losses and keeps fitted Q iteration fast on discrete
    states; continuous states simply have one row per state.
    """

    def __init__(
        self,
        *,
        anchor: Any,
        discount: float,
        anchor_reward: float = 0.0,
        policy_learner: Any = None,
        q_learner: Any = None,
        reward_learner: Any = None,
        calibration: str | None = None,
        clip: float = 1e-3,
        n_q_iter: int = 300,
        q_tol: float = 1e-5,
        min_anchor_share: float = 0.02,
        max_unsupported: float = 0.05,
        support_min_count: int = 30,
        transitions_max_states: int = 5000,
        n_threads: int | None = 1,
        rng: RNGLike = None,
    ) -> None:
        self.anchor = anchor
        self.discount = discount
        self.anchor_reward = anchor_reward
        self.policy_learner = policy_learner
        self.q_learner = q_learner
        self.reward_learner = reward_learner
        self.calibration = calibration
        self.clip = clip
        self.n_q_iter = n_q_iter
        self.q_tol = q_tol
        self.min_anchor_share = min_anchor_share
        self.max_unsupported = max_unsupported
        self.support_min_count = support_min_count
        self.transitions_max_states = transitions_max_states
        self.n_threads = n_threads
        self.rng = rng

    def _learners(self, rows_per_state: float) -> tuple[Any, Any, Any]:
        from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingClassifier

        g = as_generator(self.rng)
        seed = int(g.integers(2**31 - 1))
        pl = (
            HistGradientBoostingClassifier(
                max_iter=100,
                learning_rate=0.2,
                # aggregated discrete states need small leaves; near-unique ones do not
                min_samples_leaf=2 if rows_per_state >= 5 else 20,
                early_stopping=False,
                random_state=seed,
            )
            if self.policy_learner is None
            else clone(self.policy_learner)
        )
        if self.calibration is not None:
            from sklearn.calibration import CalibratedClassifierCV

            pl = CalibratedClassifierCV(pl, method=self.calibration, cv=3)
        ql = (
            ExtraTreesRegressor(n_estimators=10, min_samples_leaf=1, random_state=seed)
            if self.q_learner is None
            else clone(self.q_learner)
        )
        rl = (
            ExtraTreesRegressor(n_estimators=25, min_samples_leaf=1, random_state=seed)
            if self.reward_learner is None
            else clone(self.reward_learner)
        )
        return pl, ql, rl

    def fit(self, panel: Panel) -> ChoiceResults:
        """Fit P, Q and R on a panel; rewards are evaluated on the panel's states."""
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads == {self.n_threads}, must be >= 1 or None.")
        if self.n_threads is None:
            return self._fit(panel)
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        with threadpool_limits(limits=self.n_threads):
            return self._fit(panel)

    def _fit(self, panel: Panel) -> ChoiceResults:
        _check_hyper(self.discount, self.clip)
        if self.calibration not in (None, "sigmoid", "isotonic"):
            raise ValueError(
                f"calibration == {self.calibration!r}, must be None, 'sigmoid' or 'isotonic'."
            )
        if self.n_q_iter < 1:
            raise ValueError(f"n_q_iter == {self.n_q_iter}, must be >= 1.")
        a0 = panel.check_anchor(self.anchor)
        feas = panel.feasible
        af, sel = _selection(feas, a0)
        x = panel.state_features()
        n_s, n_a = feas.shape
        counts = panel.counts()
        pl, ql, rl = self._learners(panel.n_obs / max(panel.n_states, 1))

        # (P) policy on decisions in states with a choice
        s_idx, a_idx = np.nonzero((counts > 0) & (feas.sum(axis=1) > 1)[:, None])
        _fit_weighted(pl, x[s_idx], a_idx, counts[s_idx, a_idx])
        proba = np.zeros((n_s, n_a))
        classes = np.asarray(pl.classes_, dtype=np.int64)
        proba[:, classes] = pl.predict_proba(x)
        pol = np.where(feas, np.maximum(proba, self.clip), 0.0)
        pol /= pol.sum(axis=1, keepdims=True)
        check_anchor_support(
            panel,
            a0,
            counts,
            pol,
            min_anchor_share=self.min_anchor_share,
            max_unsupported=self.max_unsupported,
            support_min_count=self.support_min_count,
        )

        # (Q) fitted Q iteration on anchor (or forced) transitions, frozen targets
        ok = panel.next_state >= 0
        s, a, s1 = panel.state[ok], panel.action[ok], panel.next_state[ok]
        use = a == sel[s]
        s_q, s1_q = s[use], s1[use]
        logp0 = np.where(af, np.log(np.where(af, pol[:, a0], 1.0)), 0.0)
        r_sel = np.where(af, self.anchor_reward, 0.0)
        n_q = np.bincount(s_q, minlength=n_s).astype(float)
        fit_states = np.flatnonzero(n_q > 0)
        w = np.full(n_s, float(np.mean(r_sel - self.discount * logp0)) / (1 - self.discount))
        converged = False
        it = 0
        for it in range(1, self.n_q_iter + 1):  # noqa: B007
            v_next = w[s1_q] - logp0[s1_q]
            y = np.bincount(s_q, weights=v_next, minlength=n_s)[fit_states] / n_q[fit_states]
            y = r_sel[fit_states] + self.discount * y
            _fit_weighted(ql, x[fit_states], y, n_q[fit_states])
            w_new = np.asarray(ql.predict(x), dtype=float)
            delta = float(np.max(np.abs(w_new - w)))
            w = w_new
            if delta < self.q_tol * (1.0 + float(np.max(np.abs(w)))):
                converged = True
                break
        if not converged:
            warnings.warn(
                f"fitted Q iteration stopped after {it} iterations (n_q_iter={self.n_q_iter}) "
                "without meeting q_tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        values = w - logp0
        with np.errstate(divide="ignore"):
            logpol = np.where(feas, np.log(np.where(feas, pol, 1.0)), -np.inf)
        q = np.where(
            af[:, None], w[:, None] + logpol - logp0[:, None], np.where(feas, w[:, None], -np.inf)
        )

        # (R) regress Q(s, a) - beta V(s') on s, per non-anchor action
        rewards = np.zeros((n_s, n_a))
        rewards[af, a0] = self.anchor_reward
        for act in range(n_a):
            if act == a0:
                continue
            m = (a == act) & af[s]
            need = feas[:, act] & af
            if not need.any():
                continue
            if not m.any():
                raise AnchorSupportError(
                    f"action {panel.actions[act]!r} is never observed with a next state in "
                    "states where the anchor is feasible; its reward cannot be estimated."
                )
            tgt = q[s[m], act] - self.discount * values[s1[m]]
            n_r = np.bincount(s[m], minlength=n_s).astype(float)
            st = np.flatnonzero(n_r > 0)
            yb = np.bincount(s[m], weights=tgt, minlength=n_s)[st] / n_r[st]
            model = clone(rl)
            _fit_weighted(model, x[st], yb, n_r[st])
            pred = np.asarray(model.predict(x), dtype=float)
            rewards[need, act] = pred[need]
        trans = np.zeros((n_a, 0, 0))
        ll = _choice_loglik(panel, pol)
        if n_s <= self.transitions_max_states:
            trans, _ = estimate_transitions(panel)
            ll += _transition_loglik(panel, trans)
        return fit_results(
            panel,
            a0,
            anchor_reward=self.anchor_reward,
            discount=self.discount,
            estimator="pqr-fa",
            feasible=feas,
            rewards=rewards,
            q=q,
            policy=pol,
            values=values,
            transitions=trans,
            counts=counts,
            loglik=ll,
            converged=converged,
            info={"n_q_iter": it},
        )


def fit_results(
    panel: Panel,
    a0: int,
    *,
    estimator: str,
    anchor_reward: float,
    discount: float,
    feasible: Any,
    rewards: FloatArray,
    q: FloatArray,
    policy: FloatArray,
    values: FloatArray,
    transitions: FloatArray,
    counts: Any,
    loglik: float,
    converged: bool,
    **extra: Any,
) -> ChoiceResults:
    """The one constructor of every estimator's results (the PQR forms, CCP and NFXP):
    the panel's actions, states and first states, the anchor, the fitted arrays, then
    :func:`_checked` (the panel's facts recorded, trust checked). ``extra`` are the
    optional fields (``params``, ``se``, ``param_names``, ``info``)."""
    return _checked(
        panel,
        ChoiceResults(
            estimator=estimator,
            actions=list(panel.actions),
            anchor=panel.actions[a0],
            anchor_reward=float(anchor_reward),
            discount=discount,
            states=panel.states,
            feasible=feasible,
            rewards=rewards,
            q=q,
            policy=policy,
            values=values,
            transitions=transitions,
            counts=counts,
            first_states=panel.first_states(),
            loglik=loglik,
            converged=converged,
            **extra,
        ),
    )


def _checked(panel: Panel, res: ChoiceResults) -> ChoiceResults:
    """Record the panel's facts and set ``converged`` false (with a warning) when untrusted."""
    for key, val in panel_info(panel).items():
        res.info.setdefault(key, val)
    res.check_trust()
    return res
