"""Settings of the decision service: keyword arguments, or ``MEMBERLAB_*`` variables."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Settings"]


class Settings(BaseModel):
    """Service settings; every field can be set by ``MEMBERLAB_<FIELD>`` in upper case.

    Attributes
    ----------
    database_url : str or None
        SQLAlchemy URL; ``None`` is the SQLite file in ``$MEMBERLAB_DATA_DIR``
        (default ``./data/memberlab.db``). ``postgresql://...`` uses psycopg.
    attribution_window : float
        Seconds a click or conversion may follow its impression and still count.
    train_interval : float
        Seconds between background trainer steps; 0 disables the background trainer
        (``POST /v1/admin/train`` still works).
    propensity_draws : int
        Posterior draws used to estimate the propensity of each served item.
    exploration : float
        Exploration scale of a new recommender: Thompson draws use the posterior
        standard deviation times this (1: plain Thompson sampling, 0: greedy). Used when
        the first snapshot is created, as ``crosses`` is.
    snapshot_poll_interval : float
        Seconds between checks for a newer policy snapshot (hot swap).
    clock : {"auto", "wall"}
        ``auto``: when clients send timestamps, windows close on the data's own time
        (the latest timestamp seen), so a log can be replayed faster than real time;
        otherwise on the wall clock. ``wall``: always the wall clock.
    max_body_bytes : int
        Larger request bodies get 413.
    lease_ttl : float
        Seconds after which a crashed trainer's lease expires.
    sqlite_synchronous : {"NORMAL", "FULL"}
        SQLite durability: ``NORMAL`` survives any process crash, ``FULL`` power loss.
    train_batch_limit : int
        Most impressions one trainer step closes.
    early_hold : float
        Seconds an event may be timestamped before its decision and still count (clock
        skew between the caller and the service).
    background_trainer : bool
        Run the trainer loop in a thread of each app. ``memberlab serve`` turns it off
        in the HTTP workers and runs the loop in a process of its own instead, so
        training never holds the serving processes' GIL.
    crosses : tuple of str
        Context-by-attribute interactions of a new recommender, ``"page:benefit"``
        (environment: comma separated). Used when the first snapshot is created.
    min_observations : int
        Closed impressions an item (or a layout) needs before its click-rate estimate is
        shown; with fewer, the API flags ``enough_data: false`` and the dashboard says
        "too few observations" instead of an interval from a handful of clicks.
    key_cache_ttl : float
        Seconds an API key's scope is cached per worker process: a revoked key stops
        working on every worker at most this long after it is revoked (0: no cache).
    choice_model : str or None
        Directory written by ``memberlab choice fit`` (``results.json`` and
        ``arrays.npz``); enables ``GET /v1/choice/counterfactual``. ``None``: no
        membership counterfactuals (that endpoint answers 404).
    holdout_fraction : float
        Share of units (``unit_id`` of a decision request) held out of the policy and
        served by the baseline, in [0, 1); 0 (default) runs no experiment.
    holdout_policy : {"uniform", "first"}
        The holdout's baseline: uniform over the candidates, or the first candidate.
    experiment_salt : str or None
        Salt of the sticky assignment; ``None`` uses the one kept in the database (made
        once). Changing it re-assigns every unit.
    objective : {"clicks", "value"}
        What callout decisions optimise: clicks, or the expected member value of the
        conversions they bring (needs ``choice_model``; see :mod:`memberlab.service._value`).
    value_horizon : int
        Months of revenue in the member value (the value objective).
    prices : tuple of str
        ``ACTION=COLUMN|AMOUNT``: what a member pays for a plan, as for ``choice
        counterfactual`` (the value objective; environment: comma separated). None
        given: each plan's ``price_<plan>`` state column.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str | None = None
    attribution_window: float = Field(3600.0, gt=0)
    train_interval: float = Field(2.0, ge=0)
    propensity_draws: int = Field(100, ge=1, le=100_000)
    exploration: float = Field(1.0, ge=0, allow_inf_nan=False)
    snapshot_poll_interval: float = Field(0.5, ge=0)
    clock: Literal["auto", "wall"] = "auto"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_events_per_request: int = Field(10_000, ge=1)
    lease_ttl: float = Field(30.0, gt=0)
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    train_batch_limit: int = Field(20_000, ge=1)
    early_hold: float = Field(60.0, ge=0)
    background_trainer: bool = True
    crosses: tuple[str, ...] = ()
    choice_model: str | None = None
    key_cache_ttl: float = Field(5.0, ge=0, le=3600)
    min_observations: int = Field(30, ge=0)
    holdout_fraction: float = Field(0.0, ge=0, lt=1)
    holdout_policy: Literal["uniform", "first"] = "uniform"
    experiment_salt: str | None = Field(None, min_length=1, max_length=200)
    objective: Literal["clicks", "value"] = "clicks"
    value_horizon: int = Field(24, ge=1, le=600)
    prices: tuple[str, ...] = ()

    @field_validator("prices", mode="before")
    @classmethod
    def _split_prices(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [c.strip() for c in v.split(",") if c.strip()]
        return tuple(v)

    @field_validator("crosses", mode="before")
    @classmethod
    def _split_crosses(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [c.strip() for c in v.split(",") if c.strip()]
        for c in v:
            if not isinstance(c, str) or c.count(":") != 1 or "" in c.split(":"):
                raise ValueError(f"cross {c!r} must look like 'context_key:item_attribute'.")
        return tuple(v)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read ``MEMBERLAB_*`` variables; ``overrides`` that are not None win."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"MEMBERLAB_{name.upper()}")
            if env is not None and env != "":
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
