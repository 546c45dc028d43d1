"""Results of a fitted choice model, saved as JSON plus ``.npz`` (never pickle)."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memberlab._errors import ConvergenceWarning, DataValidationError, SchemaVersionError
from memberlab._typing import BoolArray, FloatArray, IntArray
from memberlab.choice._solve import Solution, solve_values

__all__ = ["SCHEMA_VERSION", "ChoiceResults"]

SCHEMA_VERSION = 1
#: rewards beyond this (in logit units) set ``converged`` false
MAX_PLAUSIBLE_REWARD = 30.0
#: a non-anchor action chosen fewer times than this sets ``converged`` false
MIN_ACTION_DECISIONS = 5
_JSON = "results.json"
_NPZ = "arrays.npz"


def _f(v: float, width: int, digits: int) -> str:
    return f"{'nan':>{width}}" if not np.isfinite(v) else f"{v:>{width}.{digits}f}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


@dataclass
class ChoiceResults:
    """A fitted dynamic discrete choice model on a discrete state space.

    Attributes
    ----------
    estimator : str
        ``"pqr"``, ``"pqr-fa"``, ``"ccp"`` or ``"nfxp"``.
    actions : list
        Action labels.
    anchor : Any
        The anchor action's label.
    discount : float
    states : DataFrame of shape (n_states, n_state_cols)
    feasible : ndarray of bool, shape (n_states, n_actions)
    rewards : ndarray of shape (n_states, n_actions)
        Estimated rewards, the anchor's at ``anchor_reward``; 0 where infeasible.
    q : ndarray of shape (n_states, n_actions)
        Q values, ``-inf`` where infeasible.
    policy : ndarray of shape (n_states, n_actions)
        Fitted choice probabilities (from the data for PQR and CCP, from the solved
        model for NFXP).
    values : ndarray of shape (n_states,)
    transitions : ndarray of shape (n_actions, n_states, n_states)
        Transition model used to solve and simulate.
    counts : ndarray of shape (n_states, n_actions)
        Observed decisions.
    first_states : ndarray of int, shape (n_members,)
        Each member's first observed state (for simulation).
    params, se : ndarray of shape (n_params,), optional
        Parametric reward coefficients (CCP, NFXP) and standard errors.
    param_names : list of str
    loglik : float
        Log-likelihood of the choices under the fitted model plus, when known, the
        transitions.
    converged : bool
    info : dict
        Anything else worth keeping (JSON-able).
    """

    estimator: str
    actions: list[Any]
    anchor: Any
    anchor_reward: float
    discount: float
    states: pd.DataFrame
    feasible: BoolArray
    rewards: FloatArray
    q: FloatArray
    policy: FloatArray
    values: FloatArray
    transitions: FloatArray
    counts: FloatArray
    first_states: IntArray
    params: FloatArray = field(default_factory=lambda: np.zeros(0))
    se: FloatArray = field(default_factory=lambda: np.zeros(0))
    param_names: list[str] = field(default_factory=list)
    loglik: float = float("nan")
    converged: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return len(self.states)

    def check_trust(self, *, warn: bool = True) -> list[str]:
        """Set ``converged`` false when the solution cannot be trusted; return why.

        Checks: rewards finite and within ``+-MAX_PLAUSIBLE_REWARD`` (30 in logit units:
        choice odds of e^30 between two actions are beyond any plausible scale); every
        non-anchor action chosen at least ``MIN_ACTION_DECISIONS`` (5) times; fitted
        parameters finite; reasons recorded earlier by the estimator (a singular
        information matrix, an optimiser that stopped). Each reason is kept in
        ``info["not_trusted"]`` and, with ``warn``, issued as a
        :class:`~memberlab.ConvergenceWarning`.
        """
        reasons = [str(r) for r in self.info.get("not_trusted", [])]
        f = self.feasible
        r = np.where(f, self.rewards, 0.0)
        if not np.isfinite(r).all():
            reasons.append("some estimated rewards are not finite")
        elif f.any() and float(np.abs(r).max()) > MAX_PLAUSIBLE_REWARD:
            s, a = np.unravel_index(int(np.argmax(np.abs(r))), r.shape)
            state = {c: _jsonable(v) for c, v in self.states.iloc[int(s)].items()}
            reasons.append(
                f"reward {r[s, a]:.4g} of action {self.actions[a]!r} in state {state} is "
                f"beyond any plausible scale (|reward| > {MAX_PLAUSIBLE_REWARD:g} in logit "
                "units); a rare or never-chosen action, a continuous state column or "
                "diverging coefficients"
            )
        chosen = self.counts.sum(axis=0)
        for k, n in enumerate(chosen):
            if self.actions[k] == self.anchor or not self.feasible[:, k].any():
                continue
            if n < MIN_ACTION_DECISIONS:
                reasons.append(
                    f"action {self.actions[k]!r} is chosen in only {int(n)} decision(s); its "
                    "rewards rest on smoothing and extrapolation, not on data"
                )
        if len(self.params) and not np.isfinite(self.params).all():
            bad = [
                n for n, v in zip(self.param_names, self.params, strict=False) if not np.isfinite(v)
            ]
            reasons.append(f"coefficients {bad} are not finite (diverging)")
        seen: list[str] = []
        for x in reasons:
            if x not in seen:
                seen.append(x)
        if seen:
            warned = [str(x) for x in self.info.get("trust_warned", [])]
            if warn:
                for x in seen:
                    if x not in warned:
                        warnings.warn(
                            f"{self.estimator}: not converged: {x}.",
                            ConvergenceWarning,
                            stacklevel=2,
                        )
                self.info["trust_warned"] = seen
            self.converged = False
            self.info["not_trusted"] = seen
        return seen

    @property
    def state_cols(self) -> list[str]:
        return [str(c) for c in self.states.columns]

    def action_index(self, label: Any) -> int:
        """Code of an action label."""
        for i, a in enumerate(self.actions):
            if a == label or str(a) == str(label):
                return i
        raise DataValidationError(f"action {label!r} is not among {self.actions}.")

    def rewards_frame(self) -> pd.DataFrame:
        """Long table: state columns, ``action``, ``reward``; one row per feasible pair."""
        s_idx, a_idx = np.nonzero(self.feasible)
        out = self.states.iloc[s_idx].reset_index(drop=True)
        out["action"] = [self.actions[a] for a in a_idx]
        out["reward"] = self.rewards[s_idx, a_idx]
        return out

    def solve(self, rewards: FloatArray | None = None) -> Solution:
        """Re-solve the model under the fitted (or given) rewards."""
        r = self.rewards if rewards is None else rewards
        return solve_values(r, self.transitions, self.feasible, self.discount)

    # -- econometrics ------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Number of observed decisions."""
        return int(self.counts.sum())

    def loglik_parts(self) -> tuple[float, float]:
        """Log-likelihood of the choices under the fitted policy and of the transitions.

        Their sum is :attr:`loglik`. The choice part is recomputed from ``counts`` and
        ``policy``; the transition part is the remainder (NaN if ``loglik`` is unknown).
        """
        with np.errstate(divide="ignore"):
            logp = np.where(self.counts > 0, np.log(np.maximum(self.policy, 1e-300)), 0.0)
        ll_choice = float((self.counts * logp).sum())
        ll_trans = float(self.loglik - ll_choice) if np.isfinite(self.loglik) else float("nan")
        return ll_choice, ll_trans

    @property
    def n_params(self) -> int:
        """Free reward parameters: the coefficients of a parametric reward, or for a
        tabular one the feasible non-anchor (state, action) pairs in observed states
        with a choice."""
        if len(self.params):
            return len(self.params)
        return int(self._free_pairs().sum())

    def _free_pairs(self) -> BoolArray:
        a0 = self.action_index(self.anchor)
        choice = (self.feasible.sum(axis=1) > 1) & (self.counts.sum(axis=1) > 0)
        free = self.feasible & choice[:, None]
        free[:, a0] = False
        return free

    def information_criteria(self) -> tuple[float, float]:
        """AIC and BIC of the choice log-likelihood (``n_params`` parameters, ``n_obs``
        decisions); the transitions are the same first stage for every reward model."""
        ll, _ = self.loglik_parts()
        k = self.n_params
        return 2 * k - 2 * ll, k * float(np.log(max(self.n_obs, 1))) - 2 * ll

    def summary_frame(self, *, alpha: float = 0.05) -> pd.DataFrame:
        """Coefficients as a DataFrame: ``coef, std_err, z, p_value, ci_lower, ci_upper``.

        Parametric rewards (CCP, NFXP): one row per coefficient, named
        ``"<action>:<term>"``; categorical terms are ``"<column>=<level>"`` against the
        reference level in ``info["reference_levels"]``. Tabular rewards (PQR): one row
        per free (state, action) pair (non-anchor, feasible, in an observed state with a
        choice), ``"<action> | col=value, ..."``,
        with standard errors from ``info["reward_se"]`` where a bootstrap put them, else
        NaN (tabular PQR has no analytic standard errors). Intervals at ``1 - alpha``.
        """
        if not 0 < alpha < 1:
            raise ValueError(f"alpha == {alpha}, must be in (0, 1).")
        if len(self.params):
            names = list(self.param_names)
            coef = np.asarray(self.params, dtype=float)
            se = np.asarray(self.se, dtype=float)
            if len(se) != len(coef):
                se = np.full(len(coef), np.nan)
        else:
            s_idx, a_idx = np.nonzero(self._free_pairs())
            names = []
            for s_, a_ in zip(s_idx, a_idx, strict=True):
                desc = ", ".join(
                    f"{c}={_jsonable(v)}" for c, v in self.states.iloc[int(s_)].items()
                )
                names.append(f"{self.actions[a_]} | {desc}")
            coef = self.rewards[s_idx, a_idx]
            rse = self.info.get("reward_se")
            se = (
                np.asarray(rse, dtype=float)[s_idx, a_idx]
                if rse is not None
                else np.full(len(coef), np.nan)
            )
        import scipy.stats

        with np.errstate(divide="ignore", invalid="ignore"):
            z = coef / se
        p = 2 * scipy.stats.norm.sf(np.abs(z))
        q = float(scipy.stats.norm.ppf(1 - alpha / 2))
        return pd.DataFrame(
            {
                "coef": coef,
                "std_err": se,
                "z": z,
                "p_value": p,
                "ci_lower": coef - q * se,
                "ci_upper": coef + q * se,
            },
            index=pd.Index(names, name="term"),
        )

    def summary(self, *, alpha: float = 0.05) -> str:
        """A statsmodels-style summary: the model, fit statistics and coefficients.

        Header: estimator, anchor, discount, decisions, members' states, converged (and
        why not), log-likelihood split into its choice and transition parts, AIC and BIC.
        Then the coefficient table (coef, std err, z, P>|z|, confidence interval) with the
        reference levels of categorical terms, or for tabular PQR the reward table by
        action (rewards per state are in :meth:`rewards_frame` and
        :meth:`summary_frame`).
        """
        ll_c, ll_t = self.loglik_parts()
        aic, bic = self.information_criteria()
        level = f"{100 * (1 - alpha):g}%"
        width = 78
        rule, thin = "=" * width, "-" * width

        def pair(k1: str, v1: str, k2: str, v2: str) -> str:
            right = f"   {k2 + ':':<18}{v2:>19}" if k2 else ""
            return f"{k1 + ':':<18}{v1:>20}{right}"

        fmt = lambda v: "n/a" if not np.isfinite(v) else f"{v:,.3f}"  # noqa: E731
        lines = [
            f"{'memberlab choice results':^{width}}",
            rule,
            pair("Estimator", self.estimator, "Decisions", f"{self.n_obs:,}"),
            pair(
                "Anchor",
                f"{self.anchor!s} = {self.anchor_reward:g}",
                "States",
                f"{self.n_states:,}",
            ),
            pair("Discount", f"{self.discount:g}", "Actions", str(len(self.actions))),
            pair("Converged", str(bool(self.converged)), "Parameters", str(self.n_params)),
            pair("Log-lik. (total)", fmt(self.loglik), "AIC", fmt(aic)),
            pair("  choices", fmt(ll_c), "BIC", fmt(bic)),
            pair("  transitions", fmt(ll_t), "", ""),
        ]
        bins = self.info.get("bins") or {}
        if bins:
            lines.append(
                "Binned columns:   "
                + ", ".join(f"{c} ({len(v['values'])} quantile bins)" for c, v in bins.items())
            )
        for why in self.info.get("not_trusted", []):
            lines.append(f"Not converged:    {why}")
        lines.append(rule)
        if len(self.params):
            frame = self.summary_frame(alpha=alpha)
            lines.append(
                f"{'':<30}{'coef':>9}{'std err':>9}{'z':>8}{'P>|z|':>8}"
                f"{'[' + level:>8}{'interval]':>10}"
            )
            lines.append(thin)
            for name, r in frame.iterrows():
                lines.append(
                    f"{str(name)[:30]:<30}{r['coef']:>9.4f}{_f(r['std_err'], 9, 4)}"
                    f"{_f(r['z'], 8, 3)}{_f(r['p_value'], 8, 3)}{_f(r['ci_lower'], 8, 3)}"
                    f"{_f(r['ci_upper'], 10, 3)}"
                )
            refs = self.info.get("reference_levels") or {}
            lines.append(thin)
            if refs:
                lines.append(
                    "Reference levels: "
                    + ", ".join(f"{c}={v}" for c, v in refs.items())
                    + " (coefficients of other levels are differences from these)."
                )
            if np.isnan(np.asarray(frame["std_err"], dtype=float)).any():
                lines.append(
                    "Standard errors of NaN: not identified (singular information matrix)."
                )
        else:
            w = self.counts.sum(axis=1)
            lines.append(f"{'action':<16}{'mean reward':>12}{'min':>10}{'max':>10}{'share':>8}")
            lines.append(thin)
            for a, lab in enumerate(self.actions):
                m = self.feasible[:, a]
                if not m.any():
                    continue
                r = self.rewards[m, a]
                mean = float(np.average(r, weights=w[m])) if w[m].sum() > 0 else float(r.mean())
                share = self.counts[:, a].sum() / max(self.n_obs, 1)
                lines.append(
                    f"{lab!s:<16}{mean:>12.4f}{r.min():>10.4f}{r.max():>10.4f}{share:>8.3f}"
                )
            lines.append(thin)
            lines.append(
                "Tabular rewards: one per (state, action); no analytic standard errors "
                "(bootstrap over members for intervals)."
            )
        lines.append(rule)
        return "\n".join(lines)

    def summary_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        ll_c, ll_t = self.loglik_parts()
        aic, bic = self.information_criteria()

        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        return {
            "estimator": self.estimator,
            "actions": [str(a) for a in self.actions],
            "anchor": str(self.anchor),
            "discount": self.discount,
            "n_states": self.n_states,
            "n_decisions": self.n_obs,
            "n_params": self.n_params,
            "loglik": num(self.loglik),
            "loglik_choice": num(ll_c),
            "loglik_transitions": num(ll_t),
            "aic": num(aic),
            "bic": num(bic),
            "converged": bool(self.converged),
            "not_converged_because": list(self.info.get("not_trusted", [])),
            "params": {n: float(v) for n, v in zip(self.param_names, self.params, strict=False)},
            "se": {n: num(float(v)) for n, v in zip(self.param_names, self.se, strict=False)},
            "reference_levels": dict(self.info.get("reference_levels") or {}),
            "bins": dict(self.info.get("bins") or {}),
        }

    def predict_proba(self, states: pd.DataFrame) -> pd.DataFrame:
        """Choice probabilities of the fitted model for (new) rows of states.

        Parameters
        ----------
        states : DataFrame
            Holding the model's state columns (others are ignored); binned columns are
            cut with the fitted bins (``info["bins"]``).

        Returns
        -------
        DataFrame of shape (n_rows, n_actions)
            Columns are the actions, the index that of ``states``; 0 for infeasible
            actions.

        Raises
        ------
        DataValidationError
            If a column is missing, or a row's state is not among the fitted states (a
            discrete model has no rewards or transitions there), naming the row.
        """
        from memberlab.choice._panel import apply_bins

        if isinstance(states, pd.Series):
            states = states.to_frame().T
        if not isinstance(states, pd.DataFrame):
            raise DataValidationError(f"states must be a DataFrame, got {type(states).__name__}.")
        missing = [c for c in self.state_cols if c not in states.columns]
        if missing:
            raise DataValidationError(
                f"column(s) {missing} not in states; the model's state columns are "
                f"{self.state_cols}."
            )
        new = states[self.state_cols].copy()
        for c, spec in (self.info.get("bins") or {}).items():
            if c in new.columns:
                new[c] = apply_bins(new[c].to_numpy(dtype=float), spec)

        def keys(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
            cols: list[list[Any]] = []
            for c in self.state_cols:
                col = frame[c]
                if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                    cols.append([round(float(v), 9) for v in col])
                else:
                    cols.append([str(v) for v in col])
            return list(zip(*cols, strict=True))

        lookup = {k: i for i, k in enumerate(keys(self.states))}
        idx = np.empty(len(new), dtype=np.int64)
        for j, k in enumerate(keys(new)):
            i = lookup.get(k)
            if i is None:
                raise DataValidationError(
                    f"state {dict(zip(self.state_cols, k, strict=True))} at row "
                    f"{_jsonable(new.index[j])!r} is not among the {self.n_states:,} fitted "
                    "states; a discrete model has no rewards or transitions there."
                )
            idx[j] = i
        return pd.DataFrame(
            self.policy[idx], index=states.index, columns=[str(a) for a in self.actions]
        )

    def elasticities(
        self, *, action: Any, price: str, months: int = 12, price_coef: float | None = None
    ) -> pd.DataFrame:
        """Elasticities of plan shares to the price of ``action``, month by month (see
        :func:`memberlab.choice.price_elasticities`)."""
        from memberlab.choice._counterfactual import price_elasticities

        return price_elasticities(
            self, action=action, price=price, months=months, price_coef=price_coef
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        params = f", {len(self.params)} parameters" if len(self.params) else ""
        return (
            f"<ChoiceResults: {self.estimator} on {self.n_states:,} states x "
            f"{len(self.actions)} actions {[str(a) for a in self.actions]}, anchor "
            f"{self.anchor!r}, discount {self.discount:g}, {self.n_obs:,} decisions{params}, "
            f"{status}>"
        )

    # -- persistence ----------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``results.json`` and ``arrays.npz`` into ``directory`` (created)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "kind": "memberlab.choice.ChoiceResults",
            "estimator": self.estimator,
            "actions": [_jsonable(a) for a in self.actions],
            "anchor": _jsonable(self.anchor),
            "anchor_reward": self.anchor_reward,
            "discount": self.discount,
            "state_cols": self.state_cols,
            "state_dtypes": [str(t) for t in self.states.dtypes],
            "states": {c: [_jsonable(v) for v in self.states[c].tolist()] for c in self.states},
            "param_names": list(self.param_names),
            "loglik": None if not np.isfinite(self.loglik) else self.loglik,
            "converged": bool(self.converged),
            "info": {k: _jsonable(v) for k, v in self.info.items()},
        }
        (d / _JSON).write_text(json.dumps(meta, indent=2))
        np.savez_compressed(
            d / _NPZ,
            feasible=self.feasible,
            rewards=self.rewards,
            q=self.q,
            policy=self.policy,
            values=self.values,
            transitions=self.transitions,
            counts=self.counts,
            first_states=self.first_states,
            params=self.params,
            se=self.se,
        )
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ChoiceResults:
        """Read results written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If ``results.json`` or ``arrays.npz`` is missing.
        SchemaVersionError
            If the files were written with an unknown schema version.
        """
        d = Path(directory)
        if not (d / _JSON).is_file() or not (d / _NPZ).is_file():
            raise FileNotFoundError(f"no saved choice results ({_JSON}, {_NPZ}) in {str(d)!r}.")
        meta = json.loads((d / _JSON).read_text())
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"schema_version == {version!r} in {str(d / _JSON)!r}, this release reads "
                f"only {SCHEMA_VERSION}."
            )
        states = pd.DataFrame(meta["states"], columns=meta["state_cols"])
        for c, t in zip(meta["state_cols"], meta["state_dtypes"], strict=True):
            if t != "object":
                states[c] = states[c].astype(t)
        with np.load(d / _NPZ, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        loglik = meta["loglik"]
        return cls(
            estimator=meta["estimator"],
            actions=list(meta["actions"]),
            anchor=meta["anchor"],
            anchor_reward=float(meta["anchor_reward"]),
            discount=float(meta["discount"]),
            states=states,
            feasible=arr["feasible"].astype(bool),
            rewards=arr["rewards"],
            q=arr["q"],
            policy=arr["policy"],
            values=arr["values"],
            transitions=arr["transitions"],
            counts=arr["counts"],
            first_states=arr["first_states"].astype(np.int64),
            params=arr["params"],
            se=arr["se"],
            param_names=list(meta["param_names"]),
            loglik=float("nan") if loglik is None else float(loglik),
            converged=bool(meta["converged"]),
            info=dict(meta.get("info", {})),
        )
