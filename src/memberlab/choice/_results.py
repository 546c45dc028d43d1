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

    def summary(self) -> str:
        """Plain-text summary: estimator, sizes, parameters, reward table by action."""
        n_obs = int(self.counts.sum())
        lines = [
            f"memberlab choice results ({self.estimator})",
            f"states={self.n_states} actions={self.actions} anchor={self.anchor!r} "
            f"discount={self.discount} decisions={n_obs} converged={self.converged}",
        ]
        if np.isfinite(self.loglik):
            lines.append(f"log-likelihood {self.loglik:.3f}")
        if len(self.params):
            lines.append(f"{'param':<24}{'estimate':>12}{'s.e.':>10}")
            for i, name in enumerate(self.param_names):
                se = self.se[i] if i < len(self.se) else float("nan")
                lines.append(f"{name:<24}{self.params[i]:>12.4f}{se:>10.4f}")
        w = self.counts.sum(axis=1)
        lines.append(f"{'action':<16}{'mean reward':>12}{'min':>10}{'max':>10}{'share':>8}")
        for a, lab in enumerate(self.actions):
            m = self.feasible[:, a]
            if not m.any():
                continue
            r = self.rewards[m, a]
            mean = float(np.average(r, weights=w[m])) if w[m].sum() > 0 else float(r.mean())
            share = self.counts[:, a].sum() / max(n_obs, 1)
            lines.append(f"{lab!s:<16}{mean:>12.4f}{r.min():>10.4f}{r.max():>10.4f}{share:>8.3f}")
        return "\n".join(lines)

    def summary_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "estimator": self.estimator,
            "actions": [str(a) for a in self.actions],
            "anchor": str(self.anchor),
            "discount": self.discount,
            "n_states": self.n_states,
            "n_decisions": int(self.counts.sum()),
            "loglik": None if not np.isfinite(self.loglik) else self.loglik,
            "converged": bool(self.converged),
            "params": {n: float(v) for n, v in zip(self.param_names, self.params, strict=False)},
            "se": {n: float(v) for n, v in zip(self.param_names, self.se, strict=False)},
        }

    def __str__(self) -> str:
        return self.summary()

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
