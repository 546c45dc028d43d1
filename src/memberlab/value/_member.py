"""Member value of each plan from fitted choice results.

For a member in state ``s`` the value of plan ``a`` is the expected discounted revenue
over ``horizon`` months of a member who takes ``a`` in ``s`` now and then follows the
fitted policy, minus the same for the anchor action::

    R_H(s, a) = pay(s, a) + beta * sum_s' P[a, s, s'] g_{H-1}(s')
    g_k       = m + beta * P_pi g_{k-1},   g_0 = 0,   m(s) = sum_a pi(a | s) pay(s, a)
    value(s, a) = R_H(s, a) - R_H(s, anchor)

``pay(s, a)`` is the price of ``a`` in ``s`` where the member has a choice (locked-in
months are paid at sign-up, as in :func:`memberlab.choice.counterfactual`). The policy is
the model's own: the fitted rewards re-solved on the fitted transitions (optionally under
a reward shift), the policy :func:`~memberlab.choice.counterfactual` simulates.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from memberlab._errors import DataValidationError
from memberlab._rng import RNGLike, as_generator, spawn
from memberlab._typing import FloatArray, IntArray
from memberlab.choice._counterfactual import ShiftSpec, price_matrix, reward_shift
from memberlab.choice._env import sample_next, simulate_path
from memberlab.choice._results import ChoiceResults
from memberlab.choice._solve import policy_transition

__all__ = [
    "MemberValues",
    "PriceSpec",
    "StateColumnError",
    "member_values",
    "state_codes",
]

logger = logging.getLogger(__name__)

PriceSpec = Mapping[Any, str | float]
StepFn = Callable[[IntArray, IntArray, np.random.Generator], IntArray]
_METHODS = ("auto", "exact", "simulate")


class StateColumnError(DataValidationError):
    """A state column the choice model needs is missing, or holds a value it never saw.

    Attributes
    ----------
    column : str
        The offending column.
    """

    def __init__(self, message: str, *, column: str) -> None:
        super().__init__(message)
        self.column = column


def _key(v: Any) -> str:
    """A state value as a lookup key: numbers by value (2, 2.0 and np.int64(2) agree)."""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | float | np.integer | np.floating):
        return repr(float(v))
    return str(v)


def _state_keys(states: pd.DataFrame, cols: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(_key(v) for v in row) for row in states[list(cols)].itertuples(index=False)]


def state_codes(results: ChoiceResults, states: pd.DataFrame) -> IntArray:
    """Row of ``results.states`` for each row of ``states``, matched on the state columns.

    Raises
    ------
    StateColumnError
        If a state column is missing from ``states`` or a row holds a state the model
        does not know; the error names the column.
    """
    return _codes(results.state_cols, results.states, states)


@dataclass(frozen=True)
class MemberValues:
    """Member value of each plan per state, in money, relative to the anchor.

    Attributes
    ----------
    actions : list
        Action labels of the choice model.
    anchor : Any
    state_cols : list of str
        The choice model's state columns, which a query must carry by name.
    states : DataFrame of shape (n_states, n_state_cols)
        The choice model's state table; rows of the arrays below.
    values : ndarray of shape (n_states, n_actions)
        ``R_H(s, a) - R_H(s, anchor)``; 0 for the anchor, NaN where ``a`` or the anchor is
        infeasible.
    revenue : ndarray of shape (n_states, n_actions)
        ``R_H(s, a)``, NaN where ``a`` is infeasible.
    lower, upper : ndarray of shape (n_states, n_actions) or None
        Percentile interval of ``values`` over bootstrap replicates, at level
        ``1 - alpha``; None without replicates.
    horizon : int or None
        Months; ``None`` for an infinite horizon.
    discount : float
    method : {"exact", "simulate"}
    info : dict
    """

    actions: list[Any]
    anchor: Any
    state_cols: list[str]
    states: pd.DataFrame
    values: FloatArray
    revenue: FloatArray
    lower: FloatArray | None
    upper: FloatArray | None
    horizon: int | None
    discount: float
    method: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def plans(self) -> list[Any]:
        """Non-anchor actions."""
        return [a for a in self.actions if a != self.anchor]

    def action_index(self, label: Any) -> int:
        for i, a in enumerate(self.actions):
            if a == label or str(a) == str(label):
                return i
        raise DataValidationError(f"plan {label!r} is not among the actions {self.actions}.")

    @cached_property
    def _lookup(self) -> dict[tuple[str, ...], int]:
        return {k: i for i, k in enumerate(_state_keys(self.states, self.state_cols))}

    def code_of(self, state: Mapping[str, Any]) -> int:
        """Row of :attr:`states` for one state given as a mapping (extra keys ignored).

        Raises
        ------
        StateColumnError
            If a state column is missing or holds a value the model does not know.
        """
        try:
            key = tuple(_key(state[c]) for c in self.state_cols)
        except KeyError:
            key = None
        code = None if key is None else self._lookup.get(key)
        if code is None:  # the slow path names the column
            return int(_codes(self.state_cols, self.states, pd.DataFrame([dict(state)]))[0])
        return code

    def codes(self, states: pd.DataFrame | Mapping[str, Any]) -> IntArray:
        """Row of :attr:`states` for each given state (a DataFrame or one mapping)."""
        frame = pd.DataFrame([dict(states)]) if isinstance(states, Mapping) else states
        return _codes(self.state_cols, self.states, frame)

    def plan_values(self, states: pd.DataFrame | Mapping[str, Any]) -> FloatArray:
        """Values for many states at once, shape (n, n_actions) (anchor column 0)."""
        return self.values[self.codes(states)]

    def conversion_values(self, states: pd.DataFrame, plans: Sequence[Any | None]) -> FloatArray:
        """Value of each logged outcome: the member value of the plan converted to.

        The reward of an impression for off-policy evaluation of a value policy.

        Parameters
        ----------
        states : DataFrame of shape (n, ...)
            The shoppers' states (the choice model's state columns by name).
        plans : sequence of length n
            The plan each impression converted to, or None (value 0).

        Returns
        -------
        ndarray of shape (n,)
            0 where there was no conversion or the plan is infeasible in the state.
        """
        if len(plans) != len(states):
            raise DataValidationError(
                f"plans has length {len(plans)}, states {len(states)}; they must match."
            )
        codes = self.codes(states)
        out = np.zeros(len(plans))
        for j, (code, plan) in enumerate(zip(codes, plans, strict=True)):
            if plan is not None:
                v = self.values[code, self.action_index(plan)]
                out[j] = 0.0 if np.isnan(v) else v
        return out

    #: the numeric tables, shape (n_states, n_actions) each (lower, upper may be None)
    TABLES: ClassVar[tuple[str, ...]] = ("values", "revenue", "lower", "upper")

    def to_dict(self, *, tables: bool = True) -> dict[str, Any]:
        """A JSON-ready form; :meth:`from_dict` is its inverse.

        ``tables=False`` leaves the :attr:`TABLES` as arrays (the snapshot codec stores
        them in its ``.npz``, not in the JSON header)."""

        def arr(a: FloatArray | None) -> Any:
            if a is None:
                return None
            if not tables:
                return np.asarray(a, dtype=np.float64)
            # NaN (infeasible) as null: JSON has no NaN, and NaN != NaN would make two
            # equal encodings compare unequal
            return [[None if np.isnan(v) else v for v in row] for row in np.asarray(a).tolist()]

        return {
            "actions": [_plain(a) for a in self.actions],
            "anchor": _plain(self.anchor),
            "state_cols": list(self.state_cols),
            "states": {
                "columns": [str(c) for c in self.states.columns],
                "data": [[_plain(v) for v in row] for row in self.states.itertuples(index=False)],
            },
            "values": arr(self.values),
            "revenue": arr(self.revenue),
            "lower": arr(self.lower),
            "upper": arr(self.upper),
            "horizon": self.horizon,
            "discount": float(self.discount),
            "method": self.method,
            "info": {str(k): _plain(v) for k, v in self.info.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemberValues:
        """Rebuild from :meth:`to_dict` output; malformed input raises
        :class:`~memberlab.DataValidationError`."""
        try:
            states = pd.DataFrame(data["states"]["data"], columns=data["states"]["columns"])
            actions = list(data["actions"])
            shape = (len(states), len(actions))

            def arr(key: str, optional: bool = False) -> FloatArray | None:
                v = data[key]
                if v is None and optional:
                    return None
                a = np.asarray(v, dtype=float)
                if a.shape != shape:
                    raise DataValidationError(
                        f"member values {key!r} has shape {a.shape}, must be {shape}."
                    )
                return a

            horizon = data["horizon"]
            out = cls(
                actions=actions,
                anchor=data["anchor"],
                state_cols=[str(c) for c in data["state_cols"]],
                states=states,
                values=arr("values"),  # type: ignore[arg-type]
                revenue=arr("revenue"),  # type: ignore[arg-type]
                lower=arr("lower", True),
                upper=arr("upper", True),
                horizon=None if horizon is None else int(horizon),
                discount=float(data["discount"]),
                method=str(data["method"]),
                info=dict(data.get("info") or {}),
            )
        except DataValidationError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataValidationError(f"member values are malformed: {exc!r}") from exc
        missing = [c for c in out.state_cols if c not in states.columns]
        if missing or out.anchor not in actions:
            raise DataValidationError(
                f"member values are malformed: state columns {missing} missing or anchor "
                f"{out.anchor!r} not among the actions {actions}."
            )
        return out

    def frame(self, states: pd.DataFrame | None = None) -> pd.DataFrame:
        """Long table: state columns, ``plan``, ``value`` (``lower``/``upper``), ``revenue``.

        One row per given state (default: every state of the model) and non-anchor plan.
        """
        codes = np.arange(len(self.states)) if states is None else self.codes(states)
        base = self.states.iloc[codes].reset_index(drop=True)
        parts = []
        for plan in self.plans:
            a = self.action_index(plan)
            part = base.copy()
            part["plan"] = plan
            part["value"] = self.values[codes, a]
            if self.lower is not None and self.upper is not None:
                part["lower"] = self.lower[codes, a]
                part["upper"] = self.upper[codes, a]
            part["revenue"] = self.revenue[codes, a]
            parts.append(part)
        return pd.concat(parts, ignore_index=True)


def _codes(cols: Sequence[str], table: pd.DataFrame, states: pd.DataFrame) -> IntArray:
    missing = [c for c in cols if c not in states.columns]
    if missing:
        raise StateColumnError(
            f"state column {missing[0]!r} is missing; the choice model needs {list(cols)}.",
            column=missing[0],
        )
    lookup = {k: i for i, k in enumerate(_state_keys(table, cols))}
    keys = _state_keys(states, cols)
    out = np.empty(len(keys), dtype=np.int64)
    for j, k in enumerate(keys):
        code = lookup.get(k)
        if code is None:
            for c, v in zip(cols, k, strict=True):
                known = {_key(x): x for x in table[c].unique()}
                if v not in known:
                    raw = states[c].iloc[j]
                    shown = sorted(str(x) for x in known.values())[:20]
                    raise StateColumnError(
                        f"state column {c!r} == {_plain(raw)!r} (row {j}) is not a value the "
                        f"choice model knows; known: {shown}.",
                        column=c,
                    )
            raise StateColumnError(
                f"state {dict(zip(cols, k, strict=True))} (row {j}) is not a state of the "
                "choice model.",
                column=cols[0],
            )
        out[j] = code
    return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _check(horizon: int | None, discount: float, alpha: float, method: str) -> None:
    if horizon is not None and (int(horizon) != horizon or horizon < 1):
        raise ValueError(f"horizon == {horizon!r}, must be an integer >= 1 or None.")
    if not 0.0 <= discount <= 1.0 or (horizon is None and discount >= 1.0):
        raise ValueError(
            f"discount == {discount}, must be in [0, 1] (in [0, 1) with horizon=None)."
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha == {alpha}, must be in (0, 1).")
    if method not in _METHODS:
        raise ValueError(f"method == {method!r}, must be one of {', '.join(_METHODS)}.")


def _has_transitions(results: ChoiceResults) -> bool:
    return bool(results.transitions.shape[1:] == (results.n_states, results.n_states))


def _exact_revenue(
    policy: FloatArray,
    transitions: FloatArray,
    pay: FloatArray,
    feasible: np.ndarray,
    horizon: int | None,
    discount: float,
) -> FloatArray:
    """``R_H(s, a)`` for every state and action by the backward recursion, (S, A)."""
    m = (policy * pay).sum(axis=1)
    if horizon is None:
        p_pi = policy_transition(transitions, policy)
        g = np.linalg.solve(np.eye(len(m)) - discount * p_pi, m)
    else:
        p_pi = policy_transition(transitions, policy)
        g = np.zeros(len(m))
        for _ in range(horizon - 1):
            g = m + discount * (p_pi @ g)
    out = pay + discount * np.einsum("ast,t->sa", transitions, g)
    return np.where(feasible, out, np.nan)


def _simulated_revenue(
    policy: FloatArray,
    transitions: FloatArray,
    pay: FloatArray,
    feasible: np.ndarray,
    codes: IntArray,
    horizon: int,
    discount: float,
    n_members: int,
    step: StepFn | None,
    rng: np.random.Generator,
) -> FloatArray:
    """``R_H(s, a)`` by seeded simulation for the states ``codes``, (len(codes), A).

    Every action of one state uses the same random numbers after the first month
    (common random numbers), so differences between plans carry less noise.
    """
    n_a = pay.shape[1]
    weights = np.asarray(discount ** np.arange(horizon), dtype=np.float64)
    start = np.repeat(codes, n_members)
    seed = int(rng.integers(2**63 - 1))
    out = np.full((len(codes), n_a), np.nan)
    for a in range(n_a):
        ok = feasible[codes, a]
        if not ok.any():
            continue
        g = np.random.default_rng(seed)
        acts = np.full(len(start), a, dtype=np.int64)
        u = g.random(len(start))
        total = pay[start, a].copy()
        if step is None:
            nxt = sample_next(transitions, acts, start, u)
            if horizon > 1:
                s, act = simulate_path(policy, transitions, nxt, horizon - 1, g)
                total += (pay[s, act] * weights[1:]).sum(axis=1)
        else:
            total += _stepped_revenue(policy, pay, start, acts, horizon, weights, step, g)
        mean = total.reshape(len(codes), n_members).mean(axis=1)
        out[ok, a] = mean[ok]
    return out


def _stepped_revenue(
    policy: FloatArray,
    pay: FloatArray,
    start: IntArray,
    first: IntArray,
    horizon: int,
    weights: FloatArray,
    step: StepFn,
    rng: np.random.Generator,
) -> FloatArray:
    """Discounted revenue after the first month when ``step`` draws every transition."""
    cum = np.cumsum(policy, axis=1)
    cum /= cum[:, -1:]
    total = np.zeros(len(start))
    s, a = start, first
    for t in range(1, horizon):
        s = np.asarray(step(s, a, rng), dtype=np.int64)
        if s.shape != start.shape or s.min() < 0 or s.max() >= policy.shape[0]:
            raise DataValidationError(
                f"step returned next states of shape {s.shape} in [{s.min()}, {s.max()}]; "
                f"must be shape {start.shape} with codes in [0, {policy.shape[0]})."
            )
        u = rng.random(len(s))
        a = np.minimum((cum[s] <= u[:, None]).sum(axis=1), policy.shape[1] - 1)
        total += pay[s, a] * weights[t]
    return total


def _revenue(
    results: ChoiceResults,
    prices: PriceSpec,
    shift: ShiftSpec | None,
    horizon: int | None,
    discount: float,
    method: str,
    codes: IntArray,
    n_members: int,
    step: StepFn | None,
    rng: np.random.Generator,
) -> FloatArray:
    if _has_transitions(results):
        rewards = (
            results.rewards if shift is None else results.rewards + reward_shift(results, shift)
        )
        policy = results.solve(rewards).policy
    else:  # simulation with a step function: the fitted policy as it stands
        policy = results.policy
    pay = price_matrix(results, prices)  # 0 where the member has no choice
    if method == "exact":
        return _exact_revenue(policy, results.transitions, pay, results.feasible, horizon, discount)
    assert horizon is not None
    out = np.full(results.rewards.shape, np.nan)
    out[codes] = _simulated_revenue(
        policy,
        results.transitions,
        pay,
        results.feasible,
        codes,
        horizon,
        discount,
        n_members,
        step,
        rng,
    )
    return out


def _relative(revenue: FloatArray, anchor: int) -> FloatArray:
    return revenue - revenue[:, [anchor]]


def member_values(
    results: ChoiceResults,
    *,
    prices: PriceSpec,
    horizon: int | None = 24,
    discount: float | None = None,
    shift: ShiftSpec | None = None,
    replicates: Sequence[ChoiceResults] = (),
    alpha: float = 0.05,
    method: str = "auto",
    states: pd.DataFrame | None = None,
    n_members: int = 2000,
    step: StepFn | None = None,
    rng: RNGLike = None,
) -> MemberValues:
    """Member value of each plan in each state of a fitted choice model.

    Parameters
    ----------
    results : ChoiceResults
        Any estimator's fitted results with a transition model.
    prices : mapping
        ``{action: state column or amount}``, as for
        :func:`memberlab.choice.counterfactual`.
    horizon : int or None, default 24
        Months of revenue counted, the current month included; ``None`` is the infinite
        horizon (exact only).
    discount : float, optional
        Monthly discount of revenue; the model's discount factor by default.
    shift : mapping or ndarray, optional
        A reward shift (as for counterfactuals) under which members behave.
    replicates : sequence of ChoiceResults
        Bootstrap refits; when given, ``lower``/``upper`` are percentile intervals of the
        values over them (each replicate's values computed the same way).
    alpha : float, default 0.05
    method : {"auto", "exact", "simulate"}
        ``"exact"`` propagates through the transitions (a matrix recursion);
        ``"simulate"`` moves ``n_members`` seeded members per state and plan forward;
        ``"auto"`` is exact when the results carry transitions on their states, else
        simulated with ``step``. Members follow the fitted rewards re-solved on the
        fitted transitions (the policy counterfactuals simulate); without transitions,
        ``results.policy``.
    states : DataFrame, optional
        With ``method="simulate"``, only these states are simulated (others NaN).
    n_members : int, default 2000
        Simulated members per state and plan.
    step : callable, optional
        ``(state_codes, action_codes, rng) -> next_state_codes``: draws every transition
        when simulating (default: draws from ``results.transitions``); for a transition
        model the results do not hold, e.g. a simulator's own.
    rng : int, Generator or None
        Seeds the simulation.

    Returns
    -------
    MemberValues
    """
    beta = results.discount if discount is None else float(discount)
    _check(horizon, beta, alpha, method)
    if int(n_members) != n_members or n_members < 1:
        raise ValueError(f"n_members == {n_members!r}, must be an integer >= 1.")
    has_t = _has_transitions(results)
    how = ("exact" if has_t or step is None else "simulate") if method == "auto" else method
    if not has_t and (how == "exact" or step is None):
        raise DataValidationError(
            f"results of {results.estimator!r} carry no transition model on their "
            f"{results.n_states} states; member value needs one (refit on a discrete panel) "
            "or method='simulate' with a step function."
        )
    if not has_t and shift is not None:
        raise DataValidationError(
            "shift needs the model re-solved, and results without a transition model "
            "cannot be; refit on a discrete panel."
        )
    if how == "simulate" and horizon is None:
        raise ValueError("horizon == None needs method='exact'; simulation needs a horizon.")
    codes = (
        np.arange(results.n_states)
        if states is None
        else _codes(results.state_cols, results.states, states)
    )
    a0 = results.action_index(results.anchor)
    g = as_generator(rng)
    g_main, *g_reps = spawn(g, 1 + len(replicates))
    rev = _revenue(results, prices, shift, horizon, beta, how, codes, n_members, step, g_main)
    vals = _relative(rev, a0)
    lower = upper = None
    if replicates:
        boot = np.full((len(replicates), *vals.shape), np.nan)
        keys = _state_keys(results.states, results.state_cols)
        for b, (rep, gr) in enumerate(zip(replicates, g_reps, strict=True)):
            if rep.state_cols != results.state_cols or list(map(str, rep.actions)) != list(
                map(str, results.actions)
            ):
                raise DataValidationError(
                    f"replicate {b} has state columns {rep.state_cols} and actions "
                    f"{rep.actions}; the results have {results.state_cols} and {results.actions}."
                )
            lookup = {k: i for i, k in enumerate(_state_keys(rep.states, rep.state_cols))}
            rows = np.array([lookup.get(k, -1) for k in keys])
            rep_codes = rows[codes][rows[codes] >= 0]
            r_rev = _revenue(rep, prices, shift, horizon, beta, how, rep_codes, n_members, step, gr)
            r_val = _relative(r_rev, rep.action_index(rep.anchor))
            ok = rows >= 0
            boot[b, ok] = r_val[rows[ok]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
            lower, upper = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        lower = np.where(np.isnan(vals), np.nan, lower)
        upper = np.where(np.isnan(vals), np.nan, upper)
    return MemberValues(
        actions=list(results.actions),
        anchor=results.anchor,
        state_cols=results.state_cols,
        states=results.states.reset_index(drop=True),
        values=vals,
        revenue=rev,
        lower=lower,
        upper=upper,
        horizon=horizon,
        discount=beta,
        method=how,
        info={
            "estimator": results.estimator,
            "prices": {str(k): v for k, v in prices.items()},
            "n_replicates": len(replicates),
            "n_members": n_members if how == "simulate" else None,
        },
    )
