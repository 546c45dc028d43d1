"""One table from exception to HTTP status, and the JSON error body.

Every error a route raises on purpose is a :class:`memberlab.MemberlabError`; the first
row of :data:`STATUS` whose class matches (most specific first) gives the status and the
machine-readable code. Anything else is a bug and answers 500 in the same JSON shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from memberlab._errors import (
    AuthError,
    ChoiceQueryError,
    ConflictError,
    DataValidationError,
    ForbiddenError,
    LeaseBusyError,
    MemberlabError,
    NoChoiceModelError,
    NoItemsError,
    SpaceConflictError,
    StaleSnapshotError,
    StoreUnavailableError,
    UnknownDecisionError,
    UnknownItemError,
)

__all__ = ["STATUS", "error_response", "install_error_handlers", "status_of"]

log = logging.getLogger(__name__)

#: (exception class, HTTP status, error code), most specific first.
STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (ForbiddenError, 403, "forbidden"),
    (AuthError, 401, "unauthorized"),
    (UnknownDecisionError, 404, "unknown_decision"),
    (NoChoiceModelError, 404, "no_choice_model"),
    (UnknownItemError, 404, "not_found"),
    (NoItemsError, 409, "no_items"),
    (SpaceConflictError, 409, "conflict"),
    (ConflictError, 409, "conflict"),
    (ChoiceQueryError, 422, "invalid_request"),
    (DataValidationError, 422, "invalid_request"),
    (LeaseBusyError, 503, "busy"),
    (StaleSnapshotError, 503, "busy"),
    (StoreUnavailableError, 503, "database_unavailable"),
    (MemberlabError, 400, "bad_request"),
)


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error code of an exception (500 for anything unexpected)."""
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


def error_response(
    status: int,
    error: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error body ``{"error", "message", "detail"}`` every error answers with."""
    body = {"error": error, "message": message, "detail": jsonable_encoder(detail)}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    parts = [f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in detail[:5]]
    return "; ".join(parts) or "invalid request.", detail


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the JSON shape of :class:`~memberlab.service.schemas.ErrorOut`."""

    @app.exception_handler(MemberlabError)
    async def _memberlab(_: Request, exc: MemberlabError) -> JSONResponse:
        status, code = status_of(exc)
        return error_response(status, code, str(exc), getattr(exc, "detail", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _validation_message(exc)
        return error_response(422, "invalid_request", message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8)
            return error_response(
                422, "invalid_request", f"request body could not be read: {exc.detail}"
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of every route on this path
            allowed: set[str] = set()
            for route in request.app.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                if match != Match.NONE and getattr(route, "methods", None):
                    allowed |= set(route.methods)
            headers["Allow"] = ", ".join(sorted(allowed))
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(sa_exc.OperationalError)
    async def _database(_: Request, exc: sa_exc.OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return error_response(503, "database_unavailable", "the database is unavailable; retry.")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # a bug: say so in JSON
        log.exception("unhandled error")
        return error_response(
            500, "internal_error", f"unexpected {type(exc).__name__}; see the logs."
        )
