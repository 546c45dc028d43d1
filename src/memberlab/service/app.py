"""The FastAPI application: built by :func:`create_app`, never imported as a global.

``uvicorn --factory memberlab.service.app:create_app`` builds one per worker process from
``MEMBERLAB_*`` environment variables; tests inject settings and a store.
"""

from __future__ import annotations

import logging
import os
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memberlab import __version__
from memberlab._errors import DataValidationError, MemberlabError, UnknownItemError
from memberlab.callouts import CalloutRecommender, Decision, Feedback
from memberlab.layouts import LayoutPolicy
from memberlab.policy import new_seed
from memberlab.service._choice import (
    DEFAULT_MEMBERS,
    DEFAULT_MONTHS,
    ChoiceHolder,
    ChoiceQueryError,
    parse_query,
)
from memberlab.service._layouts import LAYOUTS, LayoutsHolder, SpaceConflictError
from memberlab.service._policy import KIND, CalloutsHolder, LeaseBusyError
from memberlab.service._trainer import Trainer
from memberlab.service.schemas import (
    NO_NUL,
    DecisionIn,
    DecisionOut,
    ErrorOut,
    EventsIn,
    EventsOut,
    ItemIn,
    ItemOut,
    ItemsOut,
    LayoutDecisionIn,
    LayoutDecisionOut,
    LayoutSpaceIn,
    LayoutSpaceOut,
    RefitIn,
    ServedItemOut,
    StatsOut,
    epoch,
    finite_or_none,
)
from memberlab.service.settings import Settings
from memberlab.store import DecisionRecord, EventRecord, Store

__all__ = ["ApiError", "create_app"]

log = logging.getLogger(__name__)

_DASHBOARD = pathlib.Path(__file__).with_name("static") / "dashboard.html"

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": desc}
    for code, desc in [
        (401, "Missing or invalid API key."),
        (403, "The key's scope does not allow this call."),
        (413, "Request body too large."),
        (422, "The request is malformed or refers to something invalid."),
    ]
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown item or decision."}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "No active item to choose from."}
}
_BUSY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "The trainer lease is busy; retry."}
}


class ApiError(Exception):
    """An error with an HTTP status, a code and a message for the JSON body."""

    def __init__(self, status: int, error: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.detail = status, error, message, detail


def _error(
    status: int,
    error: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": error, "message": message, "detail": jsonable_encoder(detail)}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


class BodyLimit:
    """Reject bodies over ``limit`` bytes with 413 before any parsing (pure ASGI)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = _error(413, "body_too_large", f"request body exceeds {self.limit} bytes.")
        await resp(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="An API key from `memberlab keys create`.")


class _Auth:
    """Checks ``Authorization: Bearer <key>`` against hashed keys (cached 30 s)."""

    ttl = 30.0

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[str | None, float]] = {}

    def scope_of(self, key: str) -> str | None:
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        scope = self.store.api_key_scope(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (scope, now)
        return scope

    def require(self, needed: str) -> Callable[..., Awaitable[str]]:
        async def check(  # async: no thread hop for a cached key
            creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ) -> str:
            if creds is None or not creds.credentials:
                raise ApiError(401, "unauthorized", "missing 'Authorization: Bearer <key>'.")
            scope = self.scope_of(creds.credentials)
            if scope is None:
                raise ApiError(401, "unauthorized", "unknown or revoked API key.")
            if needed == "admin" and scope != "admin":
                raise ApiError(
                    403, "forbidden", f"this call needs scope 'admin', key has {scope!r}."
                )
            return scope

        return check


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    parts = [f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in detail[:5]]
    return "; ".join(parts) or "invalid request.", detail


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.message, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _validation_message(exc)
        return _error(422, "invalid_request", message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8)
            return _error(422, "invalid_request", f"request body could not be read: {exc.detail}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of every route on this path
            allowed: set[str] = set()
            for route in request.app.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                if match != Match.NONE and getattr(route, "methods", None):
                    allowed |= set(route.methods)
            headers["Allow"] = ", ".join(sorted(allowed))
        return _error(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(UnknownItemError)
    async def _unknown(_: Request, exc: UnknownItemError) -> JSONResponse:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(DataValidationError)
    async def _bad(_: Request, exc: DataValidationError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(SpaceConflictError)
    async def _conflict(_: Request, exc: SpaceConflictError) -> JSONResponse:
        return _error(409, "conflict", str(exc))

    @app.exception_handler(MemberlabError)
    async def _other(_: Request, exc: MemberlabError) -> JSONResponse:
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(LeaseBusyError)
    async def _busy(_: Request, exc: LeaseBusyError) -> JSONResponse:
        return _error(503, "busy", str(exc))

    @app.exception_handler(sa_exc.OperationalError)
    async def _database(_: Request, exc: sa_exc.OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return _error(503, "database_unavailable", "the database is unavailable; retry.")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # a bug: say so in JSON
        log.exception("unhandled error")
        return _error(500, "internal_error", f"unexpected {type(exc).__name__}; see the logs.")


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """Build the decision service.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env` (``MEMBERLAB_*`` variables).
    store : Store, optional
        Defaults to a store opened (and migrated) at ``settings.database_url``; an
        injected store is not closed at shutdown.
    """
    settings = settings or Settings.from_env()
    owns_store = store is None
    st = store or Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    callouts = CalloutsHolder(st, settings)
    layouts = LayoutsHolder(st, settings)
    trainer = Trainer(st, settings, callouts, layouts)
    choice = ChoiceHolder(settings.choice_model) if settings.choice_model else None
    auth = _Auth(st)
    decide_scope = auth.require("decide")
    admin_scope = auth.require("admin")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        callouts.ensure_initial()
        if settings.background_trainer:
            trainer.start()
        try:
            yield
        finally:
            trainer.stop()
            if owns_store:
                st.close()

    app = FastAPI(
        title="memberlab decision service",
        version=__version__,
        description="Callout decisions with delayed feedback, durable events and a trainer.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.settings, app.state.store = settings, st
    app.state.callouts, app.state.trainer = callouts, trainer
    app.state.choice = choice
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    # -- health and metrics -------------------------------------------------------------

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness and readiness: the database answers.

        ``policy_version`` is the newest snapshot in the database, ``serving_version``
        the one this process serves from, ``pid`` the process (for multi-worker checks).
        """
        _, serving = callouts.current()
        return {
            "status": "ok",
            "policy_version": st.latest_version(KIND),
            "serving_version": serving,
            "pid": os.getpid(),
        }

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus text format, counts read from the database."""
        now, _ = trainer.clock()
        s = st.stats(now=now)
        last = trainer.last_result
        lines = [
            ("memberlab_decisions_total", "counter", "Decisions logged.", s.decisions),
            ("memberlab_events_total", "counter", "Events acknowledged.", s.events),
            ("memberlab_pending_impressions", "gauge", "Impressions in open windows.", s.pending),
            ("memberlab_closed_impressions_total", "counter", "Impressions closed.", s.closed),
            (
                "memberlab_trainer_lag_seconds",
                "gauge",
                "Age of the oldest closed window not yet trained on.",
                s.extra.get("trainer_lag_seconds", 0.0),
            ),
            ("memberlab_policy_version", "gauge", "Newest callout snapshot.", s.policy_version),
            ("memberlab_serving_policy_version", "gauge", "Version served here.", callouts.version),
            (
                "memberlab_trainer_last_step_seconds",
                "gauge",
                "Duration of this process's last trainer step.",
                last.seconds if last else 0.0,
            ),
        ]
        out: list[str] = []
        for name, kind, help_, value in lines:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {float(value)}"]
        return "\n".join(out) + "\n"

    # -- callout items ------------------------------------------------------------------

    item_path = Path(min_length=1, max_length=200, pattern=NO_NUL, description="Item id.")

    @app.put("/v1/callouts/items/{item_id}", tags=["callouts"], response_model=ItemOut)
    def put_item(
        body: ItemIn,
        item_id: str = item_path,
        _: str = Depends(admin_scope),
    ) -> ItemOut:
        """Create or update (and reactivate) an item."""

        def change(rec: CalloutRecommender) -> None:
            rec.catalog.add(item_id, body.attributes)  # validates before anything is stored
            st.upsert_item(item_id, rec.catalog.attributes(item_id), kind=KIND)

        callouts.publish_change(change, reason="items")
        return ItemOut(item_id=item_id, attributes=body.attributes, active=True)

    @app.delete(
        "/v1/callouts/items/{item_id}",
        tags=["callouts"],
        response_model=ItemOut,
        responses=_NOT_FOUND,
    )
    def delete_item(item_id: str = item_path, _: str = Depends(admin_scope)) -> ItemOut:
        """Retire an item: it is no longer served; what was learned about it is kept."""
        known = {i.item_id: i for i in st.list_items(kind=KIND)}
        if item_id not in known:
            raise ApiError(404, "not_found", f"item {item_id!r} does not exist.")

        def change(rec: CalloutRecommender) -> None:
            st.retire_item(item_id, kind=KIND)
            if item_id in rec.catalog and rec.catalog.is_active(item_id):
                rec.catalog.retire(item_id)

        callouts.publish_change(change, reason="items")
        return ItemOut(item_id=item_id, attributes=known[item_id].attributes, active=False)

    @app.get("/v1/callouts/items", tags=["callouts"], response_model=ItemsOut)
    def list_items(_: str = Depends(admin_scope)) -> ItemsOut:
        """Every item with its posterior mean click rate and 95% interval."""
        rows = st.list_items(kind=KIND)

        def rates(rec: CalloutRecommender) -> dict[str, tuple[Any, Any, Any]]:
            if not rec.catalog.active_ids():
                return {}
            df = rec.click_rates(level=0.95)
            return {str(r.item_id): (r.mean, r.lower, r.upper) for r in df.itertuples(index=False)}

        table, version = callouts.call(rates)
        items = []
        for row in rows:
            m, lo, hi = table.get(row.item_id, (None, None, None))
            items.append(
                ItemOut(
                    item_id=row.item_id,
                    attributes=row.attributes,
                    active=row.active,
                    mean=finite_or_none(m),
                    lower=finite_or_none(lo),
                    upper=finite_or_none(hi),
                )
            )
        return ItemsOut(items=items, policy_version=version)

    # -- decisions and events -----------------------------------------------------------

    @app.post(
        "/v1/callouts/decisions",
        tags=["callouts"],
        response_model=DecisionOut,
        responses={**_NOT_FOUND, **_CONFLICT},
    )
    def decide(body: DecisionIn, _: str = Depends(decide_scope)) -> DecisionOut:
        """Thompson-sample the top ``k`` callouts for a shopper; the decision is logged."""
        seed = new_seed()

        def run(rec: CalloutRecommender) -> Decision:
            if body.candidates is None and not rec.catalog.active_ids():
                raise ApiError(409, "no_items", "no active items: PUT /v1/callouts/items first.")
            return rec.decide(body.context, candidates=body.candidates, k=body.k, seed=seed)

        decision, version = callouts.call(run)
        client_ts = epoch(body.timestamp)
        record = DecisionRecord(
            decision_id=uuid.uuid4().hex,
            kind=KIND,
            space="",
            context=body.context,
            served=decision.item_ids,
            policy_version=version,
            seed=seed,
            ts=time.time() if client_ts is None else client_ts,
            ts_client=client_ts is not None,
        )
        st.log_decision(
            record,
            [(s.item_id, s.propensity) for s in decision.items],
            window=settings.attribution_window,
        )
        return DecisionOut(
            decision_id=record.decision_id,
            items=[
                ServedItemOut(
                    item_id=s.item_id,
                    score=float(s.score),
                    propensity=finite_or_none(s.propensity),
                )
                for s in decision.items
            ],
            policy_version=version,
        )

    @app.post(
        "/v1/events",
        tags=["events"],
        status_code=202,
        response_model=EventsOut,
        responses=_NOT_FOUND,
    )
    def events(body: EventsIn, _: str = Depends(decide_scope)) -> EventsOut:
        """Clicks and conversions; an event id counts once, forever.

        The events are committed to the database before the 202 is sent.
        """
        if len(body.events) > settings.max_events_per_request:
            raise ApiError(
                422,
                "invalid_request",
                f"{len(body.events)} events in one request, at most "
                f"{settings.max_events_per_request}.",
            )
        known = st.get_decisions([e.decision_id for e in body.events])
        missing = sorted({e.decision_id for e in body.events} - set(known))
        if missing:
            raise ApiError(
                404, "unknown_decision", f"unknown decision id(s): {missing[:10]}", missing
            )
        records = []
        now = time.time()
        for n, e in enumerate(body.events):
            d = known[e.decision_id]
            item = e.item_id or ""
            if d.kind == LAYOUTS and item:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"events.{n}: decision {e.decision_id!r} is a layout decision; "
                    "send its events without an item_id.",
                )
            if d.kind == KIND and item not in d.served:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"events.{n}: item {e.item_id!r} was not served by decision "
                    f"{e.decision_id!r} (served: {d.served}).",
                )
            ts = epoch(e.timestamp)
            records.append(
                EventRecord(
                    event_id=e.event_id,
                    decision_id=e.decision_id,
                    item_id=item,
                    type=e.type,
                    value=e.value,
                    ts=now if ts is None else ts,
                    ts_client=ts is not None,
                )
            )
        accepted, duplicates = st.add_events(records)
        return EventsOut(accepted=accepted, duplicates=duplicates)

    # -- layouts ----------------------------------------------------------------------

    space_path = Path(min_length=1, max_length=200, pattern=NO_NUL, description="Space name.")

    @app.put(
        "/v1/layouts/{space}",
        tags=["layouts"],
        response_model=LayoutSpaceOut,
        responses={409: {"model": ErrorOut, "description": "Defined differently before."}},
    )
    def put_layout_space(
        body: LayoutSpaceIn, space: str = space_path, _: str = Depends(admin_scope)
    ) -> LayoutSpaceOut:
        """Define a layout space (idempotent; a different definition of an existing space
        is refused with 409, since its learned model would not fit)."""
        spec = body.model_dump()
        if spec["interactions"] is not None:
            spec["interactions"] = [list(p) for p in spec["interactions"]]
        version, created = layouts.define(space, spec)
        return LayoutSpaceOut(
            space=space, definition=layouts.spec(space), policy_version=version, created=created
        )

    @app.get(
        "/v1/layouts/{space}", tags=["layouts"], response_model=LayoutSpaceOut, responses=_NOT_FOUND
    )
    def get_layout_space(space: str = space_path, _: str = Depends(admin_scope)) -> LayoutSpaceOut:
        """The space's definition and its leaderboard (layouts by posterior mean)."""

        def board(policy: LayoutPolicy) -> list[dict[str, Any]]:
            return [e.to_dict() for e in policy.leaderboard(top=10)]

        entries, version = layouts.call(space, board)
        clean = [
            {k: finite_or_none(v) if isinstance(v, float) else v for k, v in e.items()}
            for e in entries
        ]
        return LayoutSpaceOut(
            space=space, definition=layouts.spec(space), policy_version=version, leaderboard=clean
        )

    @app.post(
        "/v1/layouts/{space}/decisions",
        tags=["layouts"],
        response_model=LayoutDecisionOut,
        responses=_NOT_FOUND,
    )
    def decide_layout(
        body: LayoutDecisionIn, space: str = space_path, _: str = Depends(decide_scope)
    ) -> LayoutDecisionOut:
        """Thompson-sample a layout for a request; rewards come through POST /v1/events
        with the decision id and no item id."""
        seed = new_seed()
        decision, version = layouts.call(space, lambda p: p.decide(body.context, seed=seed))
        client_ts = epoch(body.timestamp)
        record = DecisionRecord(
            decision_id=decision.decision_id,
            kind=LAYOUTS,
            space=space,
            context=body.context,
            served=decision.layout,
            policy_version=version,
            seed=seed,
            ts=time.time() if client_ts is None else client_ts,
            ts_client=client_ts is not None,
        )
        st.log_decision(record, [("", decision.propensity)], window=settings.attribution_window)
        return LayoutDecisionOut(
            decision_id=decision.decision_id,
            layout=decision.layout,
            propensity=finite_or_none(decision.propensity),
            policy_version=version,
        )

    # -- administration -----------------------------------------------------------------

    @app.post("/v1/admin/train", tags=["admin"], responses=_BUSY)
    def train(_: str = Depends(admin_scope)) -> dict[str, Any]:
        """Run one trainer step now and say what it did."""
        return trainer.step(wait=10.0).to_dict()

    @app.post("/v1/admin/priors/refit", tags=["admin"], responses=_BUSY)
    def refit(body: RefitIn | None = None, _: str = Depends(admin_scope)) -> dict[str, Any]:
        """Refit the empirical-Bayes meta-priors from the logs and retrain in hindsight."""
        method = body.method if body else "deconvolved"

        def change(rec: CalloutRecommender) -> Any:
            log_ = [
                Feedback(d.context, d.item_id, d.reward, d.decision_id)
                for d in st.closed_impressions(KIND)
                if d.item_id in rec.catalog
            ]
            return rec.refit_priors(log_, method=method), len(log_)

        (result, n), version = callouts.publish_change(change, reason="refit")
        return {
            "policy_version": version,
            "method": method,
            "n_feedback": n,
            "n_replayed": result.n_replayed,
            "priors": {
                g: {"mean": finite_or_none(p.mean), "var": finite_or_none(p.var)}
                for g, p in result.priors.items()
            },
        }

    @app.get("/v1/admin/traffic", tags=["admin"])
    def traffic(
        bucket: float = Query(60.0, gt=0, le=86_400, description="Bucket width in seconds."),
        _: str = Depends(admin_scope),
    ) -> dict[str, Any]:
        """Callouts served per time bucket and item (the most recent 50,000 impressions)."""
        rows = st.traffic(KIND, bucket=bucket)
        return {
            "bucket": bucket,
            "rows": [{"start": b, "item_id": item, "count": n} for b, item, n in rows],
        }

    @app.get("/v1/layouts", tags=["layouts"])
    def list_layout_spaces(_: str = Depends(admin_scope)) -> dict[str, list[str]]:
        """Names of the defined layout spaces."""
        return {"spaces": st.spaces(LAYOUTS)}

    # -- membership counterfactuals -----------------------------------------------------

    def _choice_model() -> ChoiceHolder:
        if choice is None:
            raise ApiError(
                404,
                "no_choice_model",
                "no choice model is configured: start the service with --choice-model DIR "
                "(or MEMBERLAB_CHOICE_MODEL=DIR), DIR written by 'memberlab choice fit'.",
            )
        return choice

    @app.get("/v1/choice/model", tags=["choice"], responses=_NOT_FOUND)
    def choice_model(_: str = Depends(admin_scope)) -> dict[str, Any]:
        """The loaded membership choice model: actions, anchor, states and query limits."""
        return _choice_model().model()

    @app.get("/v1/choice/counterfactual", tags=["choice"], responses=_NOT_FOUND)
    def choice_counterfactual(
        shift: list[str] = Query(  # noqa: B008
            [],
            description="ACTION=DELTA added to the action's reward in every state "
            "(repeatable, e.g. shift=monthly=-0.3).",
        ),
        price: list[str] = Query(  # noqa: B008
            [],
            description="ACTION=STATE_COLUMN or ACTION=AMOUNT paid when choosing the action "
            "(repeatable); without it revenue is null.",
        ),
        price_change: list[str] = Query(  # noqa: B008
            [],
            description="ACTION=FACTOR: the action's price (a state column given in "
            "``price``) times FACTOR; utility through the price coefficient, revenue at the "
            "new price (repeatable, e.g. price_change=monthly=1.2).",
        ),
        months: int = Query(DEFAULT_MONTHS, description="Months to simulate (1 to 60)."),
        members: int = Query(DEFAULT_MEMBERS, description="Simulated members (1 to 20,000)."),
        seed: int = Query(0, ge=0, le=2**63 - 1, description="Random seed."),
        _: str = Depends(admin_scope),
    ) -> dict[str, Any]:
        """Baseline against shifted rewards: plan shares per action and month with 95%
        intervals over simulated members, churn (and revenue with ``price``), from
        :func:`memberlab.choice.counterfactual`. Results are cached per query."""
        holder = _choice_model()
        try:
            q = parse_query(
                holder.results,
                shift=shift,
                price=price,
                price_change=price_change,
                months=months,
                members=members,
                seed=seed,
            )
        except ChoiceQueryError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        return holder.counterfactual(q)

    @app.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        """A static page that reads the API with a key typed into it."""
        return HTMLResponse(_DASHBOARD.read_text(encoding="utf-8"))

    @app.get("/v1/admin/stats", tags=["admin"], response_model=StatsOut)
    def stats(_: str = Depends(admin_scope)) -> StatsOut:
        """Counts read from the database."""
        s = st.stats()
        return StatsOut(
            decisions=s.decisions,
            events=s.events,
            pending=s.pending,
            policy_version=st.latest_version(KIND),
            closed=s.closed,
            positives=s.positives,
        )

    return app
