"""The hot routes' short way through the app: :class:`HotLane` hands
``POST /v1/callouts/decisions`` and ``POST /v1/events`` straight to their endpoints, in
front of everything FastAPI and Starlette run per request.

Those two requests are most of a busy service's traffic, and on them the framework
around the endpoint cost about as much CPU as the endpoint itself (the exception and
body-limit middlewares, routing, FastAPI's request handler: 0.22 of 0.47 ms per decision
in ``benchmarks/service_profile.py``). The lane is consulted by the app's own
``__call__`` (:class:`memberlab.service.app.ServiceApp`), before FastAPI's telemetry
check and Starlette's error, telemetry and body-limit middlewares: as a user middleware
it sat inside those, and they cost about 15% of a busy worker's CPU (py-spy, 1,000
decisions/s). The endpoints are the same functions the app's
routes call (they read their own key and body from a Starlette ``Request``); their
answers, errors included, are the same: the body limit answers 413 as
:class:`memberlab.service.app.BodyLimit` does, an exception is answered by the handler
the app registered for it (``install_error_handlers``, looked up along the exception's
class hierarchy as Starlette does), and each request is timed into the same
``/metrics`` histogram. The app's routes for these paths stay registered, so OpenAPI
documents them and ``/docs`` shows them; any other method or path goes through the app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from memberlab.service._metrics import RequestMetrics

__all__ = ["Endpoint", "HotLane", "read_limited"]

Endpoint = Callable[[Request], Awaitable[Response]]


async def read_limited(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes: declared so in its
    ``content-length`` (nothing is read) or found so while reading."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                pass
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return b"".join(chunks)


class HotLane:
    """``(method, path) -> endpoint`` for exact paths; the app serves the rest.

    Parameters
    ----------
    routes : mapping (method, path) -> endpoint
    limit : int
        Largest request body in bytes (413 above it).
    too_large : callable () -> Response
        The 413 answer.
    handlers : callable () -> mapping
        The app's exception handlers (``FastAPI.exception_handlers``), read per error
        so handlers registered after start-up count too.
    metrics : RequestMetrics
        Where each request's duration goes (route template = its path).
    """

    def __init__(
        self,
        *,
        routes: Mapping[tuple[str, str], Endpoint],
        limit: int,
        too_large: Callable[[], Response],
        handlers: Callable[[], Mapping[Any, Callable[..., Any]]],
        metrics: RequestMetrics,
    ) -> None:
        self.routes, self.limit = dict(routes), limit
        self.too_large, self.handlers, self.metrics = too_large, handlers, metrics

    def endpoint(self, scope: Scope) -> Endpoint | None:
        """The endpoint of this request, or None when the app serves it."""
        if scope["type"] != "http":
            return None
        return self.routes.get((scope["method"], scope["path"]))

    async def serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request with ``endpoint`` (its errors by the app's handlers)."""
        t0 = time.perf_counter()
        status = 500
        try:
            response = await self._answer(endpoint, scope, receive)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.metrics.observe(scope["path"], scope["method"], status, time.perf_counter() - t0)

    async def _answer(self, endpoint: Endpoint, scope: Scope, receive: Receive) -> Response:
        body = await read_limited(scope, receive, self.limit)
        if body is None:
            return self.too_large()
        request = Request(scope, receive)
        request._body = body  # what Request.body() returns, read once above
        try:
            return await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response: Response = await handler(request, exc)
            return response

    def _handler(self, exc: Exception) -> Callable[..., Any] | None:
        handlers = self.handlers()
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None
