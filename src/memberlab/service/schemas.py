"""Request and response bodies of the HTTP API (pydantic models, in the OpenAPI schema)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, StringConstraints

__all__ = [
    "ChoiceOut",
    "DecisionIn",
    "DecisionOut",
    "ErrorOut",
    "EventIn",
    "EventsIn",
    "EventsOut",
    "HealthOut",
    "ItemIn",
    "ItemOut",
    "ItemWrittenOut",
    "ItemsOut",
    "KeyCreateIn",
    "KeyCreatedOut",
    "KeyOut",
    "KeyRevokedOut",
    "KeysOut",
    "LayoutDecisionIn",
    "LayoutDecisionOut",
    "LayoutSpaceIn",
    "LayoutSpaceOut",
    "ModelRefitOut",
    "PriorOut",
    "RateOut",
    "RatesIn",
    "RatesOut",
    "RefitIn",
    "RefitOut",
    "ReportOut",
    "ServedItemOut",
    "SpaceRetiredOut",
    "SpacesOut",
    "StatsOut",
    "TrafficOut",
    "TrafficRow",
    "TrainOut",
    "epoch",
    "finite_or_none",
]

# No NUL characters anywhere: PostgreSQL text cannot hold them.
NO_NUL = r"^[^\x00]*$"
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
Scalar = Text | bool | int | float
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
UNIT_HELP = (
    "The shopper or member the request is for: the holdout experiment assigns a unit to "
    "an arm once (sticky); without it each request is assigned on its own."
)
Arm = Literal["policy", "holdout"]
ArmUnit = Literal["unit", "request"]
ARM_HELP = "holdout: served by the baseline; policy: by the policy (always, without a holdout)."
ARM_UNIT_HELP = "unit: the arm is the unit id's (sticky); request: drawn for this request."
Value = Scalar | None | Annotated[list[Scalar], Field(max_length=100)]


class _In(BaseModel):
    # strict: "2" is not an int and 0 is not a timestamp, as the OpenAPI schema says
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _iso_string(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError("must be an ISO 8601 string, e.g. 2026-01-01T12:00:00Z")
    return v


Timestamp = Annotated[datetime, Field(strict=False), BeforeValidator(_iso_string)]


def epoch(ts: datetime | None) -> float | None:
    """Seconds since the epoch; a timestamp without a zone is taken as UTC."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


class ItemIn(_In):
    attributes: Annotated[dict[Key, Value], Field(max_length=100)] = Field(
        description="Item attributes: str, bool, int, float, null or a list of those.",
        examples=[{"benefit": "video", "brand": "prime", "colour": "blue", "price": 8.99}],
    )


class ItemOut(BaseModel):
    item_id: str
    attributes: dict[str, Any]
    active: bool
    mean: float | None = Field(default=None, description="Posterior mean click rate.")
    lower: float | None = Field(default=None, description="Lower end of the 95% interval.")
    upper: float | None = Field(default=None, description="Upper end of the 95% interval.")
    observations: int = Field(default=0, description="Closed impressions of this item.")
    clicks: int = Field(default=0, description="Of those, impressions with a positive reward.")
    enough_data: bool = Field(
        default=False,
        description="observations >= the service's min_observations; when false the "
        "estimate is mostly the prior and the dashboard says 'too few observations'.",
    )


class ItemWrittenOut(ItemOut):
    warnings: list[str] = Field(
        default_factory=list,
        description="Configuration problems this item shows, e.g. crosses that never fire.",
    )


class ItemsOut(BaseModel):
    items: list[ItemOut]
    policy_version: int


class DecisionIn(_In):
    context: Annotated[dict[Key, Value], Field(max_length=100)] = Field(
        default_factory=dict,
        examples=[{"member": False, "page": "video", "interests": ["films"]}],
    )
    candidates: Annotated[list[ItemId], Field(min_length=1, max_length=1000)] | None = None
    k: int = Field(1, ge=1, le=100)
    timestamp: Timestamp | None = Field(default=None, description="ISO 8601 time of the request.")
    unit_id: UnitId | None = Field(default=None, description=UNIT_HELP)


class RatesIn(_In):
    context: Annotated[dict[Key, Value], Field(max_length=100)] = Field(
        default_factory=dict,
        examples=[{"member": True, "page": "films", "interests": ["video"]}],
        description="The shopper context the click rates are for.",
    )
    level: float = Field(0.95, gt=0, lt=1, strict=False, description="Interval level.")


class RateOut(BaseModel):
    item_id: str
    mean: float | None = Field(description="Posterior predictive click rate in this context.")
    lower: float | None
    upper: float | None


class RatesOut(BaseModel):
    context: dict[str, Any]
    level: float
    items: list[RateOut]
    policy_version: int


class ServedItemOut(BaseModel):
    item_id: str
    score: float | None = Field(description="Thompson-sampling score; null in the holdout.")
    propensity: float | None


class DecisionOut(BaseModel):
    decision_id: str
    items: list[ServedItemOut]
    policy_version: int
    assignment: Arm = Field(default="policy", description=ARM_HELP)
    assignment_unit: Literal["unit", "request"] = Field(
        default="request", description=ARM_UNIT_HELP
    )


class EventIn(_In):
    event_id: Key
    decision_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
    item_id: ItemId | None = Field(default=None, description="Served item (none for layouts).")
    type: Literal["click", "conversion"]
    value: float | None = None
    timestamp: Timestamp | None = None
    plan: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)] | None = (
        Field(
            default=None,
            description="The plan a conversion signs up for (a non-anchor action of the "
            "choice model; required for conversions under the value objective).",
        )
    )


class EventsIn(_In):
    events: Annotated[list[EventIn], Field(min_length=1)]


class EventsOut(BaseModel):
    accepted: int
    duplicates: int


class StatsOut(BaseModel):
    decisions: int
    events: int
    pending: int
    policy_version: int
    closed: int = 0
    positives: int = 0
    clock: str = Field(default="wall", description="wall, or data (the latest client timestamp).")
    now: float | None = Field(
        default=None, description="The trainer's clock, seconds since the epoch."
    )
    next_window_closes_at: float | None = Field(
        None, description="When the earliest open attribution window closes (epoch seconds)."
    )
    next_window_closes_in: float | None = Field(
        None, description="Seconds from the trainer's clock until then (0: due now)."
    )
    attribution_window: float = 0.0
    crosses: list[str] = Field(default_factory=list, description="Configured crosses.")
    never_fired_crosses: list[str] = Field(
        default_factory=list,
        description="Configured crosses with no weight yet: the context key or the attribute "
        "has never been seen in training (a typo, or a key clients do not send).",
    )


class TrainOut(BaseModel):
    """What one trainer step did, and when it will next have something to do."""

    ran: bool
    reason: str
    now: float | None = None
    clock: str = "wall"
    closed: int = 0
    positives: int = 0
    policy_version: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)
    pending: int = Field(default=0, description="Impressions still in open attribution windows.")
    next_window_closes_at: float | None = None
    next_window_closes_in: float | None = None


class PriorOut(BaseModel):
    mean: float | None
    var: float | None


class ModelRefitOut(BaseModel):
    n_replayed: int
    priors: dict[str, PriorOut]


class RefitOut(BaseModel):
    policy_version: int
    method: str
    n_feedback: int
    n_replayed: int
    priors: dict[str, PriorOut]
    models: dict[str, ModelRefitOut] = Field(
        default_factory=dict,
        description="Under --objective value: each underlying model's refit (click and "
        "one per plan); empty for the click objective.",
    )


class TrafficRow(BaseModel):
    start: float | None = Field(
        description="Bucket start (epoch seconds); null if a tiny bucket overflows."
    )
    item_id: str
    count: int


class TrafficOut(BaseModel):
    bucket: float
    rows: list[TrafficRow]


class SpacesOut(BaseModel):
    spaces: list[str]


class HealthOut(BaseModel):
    status: str
    policy_version: int
    serving_version: int
    pid: int


class KeyOut(BaseModel):
    prefix: str = Field(description="The key's first 16 characters (not secret).")
    scope: str
    label: str
    created_at: float
    revoked: bool


class KeysOut(BaseModel):
    keys: list[KeyOut]


class KeyCreateIn(_In):
    scope: Literal["decide", "admin"]
    label: Text = ""


class KeyCreatedOut(BaseModel):
    key: str = Field(description="The new key; shown once, only its hash is stored.")
    prefix: str
    scope: str


class KeyRevokedOut(BaseModel):
    prefix: str
    revoked: int = Field(description="Keys revoked by this call.")
    takes_effect_within: float = Field(
        description="Seconds until every worker refuses the key (the key cache TTL)."
    )


class SpaceRetiredOut(BaseModel):
    space: str
    retired: bool
    dropped_pending: int = Field(description="Open impressions of the space, dropped.")


class ChoiceOut(RootModel[dict[str, Any]]):
    """A JSON object produced by :mod:`memberlab.service._choice`."""


class ReportOut(RootModel[dict[str, Any]]):
    """A JSON object produced by the library (readouts, export pages, evaluations)."""


class RefitIn(_In):
    method: Literal["deconvolved", "naive"] = "deconvolved"


SlotName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]


class LayoutSpaceIn(_In):
    """A layout space (see :meth:`memberlab.layouts.LayoutSpace.from_dict`)."""

    slots: Annotated[
        dict[SlotName, Annotated[list[SlotName], Field(min_length=1, max_length=24)]],
        Field(min_length=1, max_length=12),
    ] = Field(examples=[{"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"]}])
    interactions: (
        Annotated[
            list[Annotated[list[SlotName], Field(min_length=2, max_length=2)]],
            Field(max_length=66),
        ]
        | None
    ) = Field(
        default=None,
        description='Interacting slot pairs as JSON arrays, e.g. [["headline", "image"]]; '
        "null means all pairs.",
    )
    constraints: Annotated[list[dict[SlotName, SlotName]], Field(max_length=100)] = Field(
        default_factory=list, description="Forbidden combinations of slot: variant."
    )
    context: Annotated[list[SlotName], Field(max_length=20)] = Field(
        default_factory=list, description="Names of context fields."
    )


class LayoutSpaceOut(BaseModel):
    space: str
    definition: dict[str, Any]
    policy_version: int
    created: bool = False
    changed: bool = Field(default=False, description="An existing space gained slots or variants.")
    leaderboard: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Top layouts by posterior mean, each with observations (closed "
        "impressions of that layout) and enough_data (observations >= min_observations).",
    )
    min_observations: int = 0


class LayoutDecisionIn(_In):
    context: Annotated[dict[Key, Scalar | None], Field(max_length=100)] = Field(
        default_factory=dict, examples=[{"device": "mobile"}]
    )
    timestamp: Timestamp | None = Field(default=None, description="ISO 8601 time.")
    unit_id: UnitId | None = Field(default=None, description=UNIT_HELP)


class LayoutDecisionOut(BaseModel):
    decision_id: str
    layout: dict[str, str]
    propensity: float | None
    policy_version: int
    assignment: Arm = Field(default="policy", description=ARM_HELP)
    assignment_unit: Literal["unit", "request"] = Field(
        default="request", description=ARM_UNIT_HELP
    )


class ErrorOut(BaseModel):
    error: str = Field(description="A short machine-readable code.")
    message: str = Field(description="What is wrong, for a human.")
    detail: Any = None
