"""The FastAPI application: built by :func:`create_app`, never imported as a global.

``uvicorn --factory memberlab.service.app:serve_app`` (what ``memberlab serve`` runs)
builds one per worker process from ``MEMBERLAB_*`` environment variables; tests inject
settings and a store into :func:`create_app`. The routes
live in :mod:`memberlab.service.routes`, one module per resource, and take what they
need (:class:`~memberlab.service.deps.Services`) through FastAPI ``Depends``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.constants import REF_TEMPLATE
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memberlab import __version__
from memberlab.service._heap import freeze_startup_heap
from memberlab.service._hotlane import HotLane, read_limited
from memberlab.service._metrics import MetricsMiddleware, RequestMetrics
from memberlab.service.deps import build_services
from memberlab.service.errors import error_response, install_error_handlers
from memberlab.service.routes import (
    admin,
    choice,
    decisions,
    events,
    items,
    keys,
    layouts,
    ops,
    pages,
)
from memberlab.service.routes import experiment as experiment_routes
from memberlab.service.routes import value as value_routes
from memberlab.service.routes._common import BODY_MODELS
from memberlab.service.schemas import ErrorOut
from memberlab.service.settings import Settings
from memberlab.store import Store

__all__ = ["ServiceApp", "create_app", "serve_app"]

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": desc}
    for code, desc in [
        (401, "Missing or invalid API key."),
        (403, "The key's scope does not allow this call."),
        (413, "Request body too large."),
        (422, "The request is malformed or refers to something invalid."),
    ]
}


class BodyLimit:
    """Reject bodies over ``limit`` bytes with 413 before any parsing (pure ASGI)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_limited(scope, receive, self.limit)
        if body is None:
            await self._reject(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        await too_large(self.limit)(scope, receive, send)


class ServiceApp(FastAPI):
    """The FastAPI app with the hot lane in front: a request the lane serves
    (:class:`~memberlab.service._hotlane.HotLane`) skips FastAPI's and Starlette's
    per-request machinery; every other request, and the lifespan, is FastAPI's."""

    hot_lane: HotLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.hot_lane
        endpoint = None if lane is None or self.root_path else lane.endpoint(scope)
        if endpoint is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # what Starlette sets: request.app in the endpoint
        assert lane is not None
        await lane.serve(endpoint, scope, receive, send)


def too_large(limit: int) -> Response:
    """The 413 answer to a body over ``limit`` bytes."""
    return error_response(413, "body_too_large", f"request body exceeds {limit} bytes.")


def _document_body_models(app: FastAPI) -> None:
    """Add the schemas of the request bodies the hot routes read themselves
    (:data:`~memberlab.service.routes._common.BODY_MODELS`) to the app's OpenAPI."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        _, top = models_json_schema(
            [(m, "validation") for m in BODY_MODELS], ref_template=REF_TEMPLATE
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model_schema in top.get("$defs", {}).items():
            components.setdefault(name, model_schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve_app() -> FastAPI:
    """The app of one server worker process (settings from ``MEMBERLAB_*`` variables):
    :func:`create_app`, whose start-up also freezes the process's heap
    (:mod:`memberlab.service._heap`: no 100-300 ms full garbage collections mid-traffic)."""
    return create_app(freeze_heap=True)


def create_app(
    settings: Settings | None = None, *, store: Store | None = None, freeze_heap: bool = False
) -> FastAPI:
    """Build the decision service.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env` (``MEMBERLAB_*`` variables).
    store : Store, optional
        Defaults to a store opened (and migrated) at ``settings.database_url``; an
        injected store is not closed at shutdown.
    freeze_heap : bool, default False
        At start-up, exempt every object alive then from later garbage collections
        (:func:`memberlab.service._heap.freeze_startup_heap`); for a process that serves
        this one app until it exits (:func:`serve_app`).
    """
    settings = settings or Settings.from_env()
    owns_store = store is None
    st = store or Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    svc = build_services(settings, st)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.callouts.ensure_initial()
        if svc.value is not None:
            svc.value.ensure_initial()
        if settings.background_trainer:
            svc.trainer.start()
        if freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            svc.trainer.stop()
            if owns_store:
                st.close()

    app = ServiceApp(
        title="memberlab decision service",
        version=__version__,
        description="Callout decisions with delayed feedback, durable events and a trainer.",
        lifespan=lifespan,
        responses=_ERRORS,
        docs_url=None,  # served by routes.pages from vendored files: no CDN
        redoc_url=None,
    )
    app.state.services = svc
    # kept for callers that read them directly
    app.state.settings, app.state.store = settings, st
    app.state.callouts, app.state.trainer, app.state.choice = svc.callouts, svc.trainer, svc.choice
    app.state.request_metrics = RequestMetrics()
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, recorder=app.state.request_metrics)
    # in front of the app: the two hottest requests skip its whole stack (same answers)
    app.hot_lane = HotLane(
        routes={
            ("POST", "/v1/callouts/decisions"): decisions.post_decision,
            ("POST", "/v1/events"): events.post_events,
        },
        limit=settings.max_body_bytes,
        too_large=lambda: too_large(settings.max_body_bytes),
        handlers=lambda: app.exception_handlers,
        metrics=app.state.request_metrics,
    )

    # The hot routes first: a request is matched against the routes in this order, and
    # their paths are literal, so nothing later can shadow them or be shadowed.
    app.include_router(decisions.router, prefix="/v1/callouts")
    app.include_router(events.events_router, prefix="/v1/events")
    app.include_router(ops.router)
    app.include_router(items.router, prefix="/v1/callouts/items")
    app.include_router(items.rates_router, prefix="/v1/callouts")
    app.include_router(layouts.spaces_router, prefix="/v1/layouts")
    app.include_router(layouts.router, prefix="/v1/layouts")
    app.include_router(admin.router, prefix="/v1/admin")
    app.include_router(experiment_routes.router, prefix="/v1/admin")
    app.include_router(keys.router, prefix="/v1/admin/keys")
    app.include_router(value_routes.router, prefix="/v1/admin")
    app.include_router(choice.router, prefix="/v1/choice")
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    _document_body_models(app)
    app.state.request_metrics.set_templates(
        [*app.openapi()["paths"], "/docs", "/dashboard", "/static/{path:path}"]
    )
    return app
