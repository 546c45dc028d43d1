"""Request latency histograms and error counters per route, in Prometheus text format.

A pure ASGI middleware records, per worker process, the duration of every HTTP request
by route template (``/v1/layouts/{space}/decisions``, not the concrete path), method and
status class. ``/metrics`` renders them with a ``worker`` label (the process id), so a
scraper that reaches several workers sees each one's series separately.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import time
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BUCKETS", "MetricsMiddleware", "RequestMetrics"]

#: Upper bounds (seconds) of the latency histogram buckets.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsMiddleware:
    """Pure ASGI middleware that times every HTTP request into a :class:`RequestMetrics`."""

    def __init__(self, app: ASGIApp, recorder: RequestMetrics) -> None:
        self.app, self.recorder = app, recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.recorder.observe(
                self.recorder.template(scope.get("path", "")),
                scope.get("method", ""),
                status[0],
                time.perf_counter() - t0,
            )


class RequestMetrics:
    """Per-route request counts, errors and latencies of this worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (route, method) -> [bucket counts..., +Inf count], sum
        self._hist: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self._errors: dict[tuple[str, str, str], int] = {}
        self._templates: list[tuple[re.Pattern[str], str]] = []
        self._seen: dict[str, str] = {}

    def set_templates(self, templates: list[str]) -> None:
        """Route templates such as ``/v1/layouts/{space}``; literal ones match first."""
        ordered = sorted(templates, key=lambda t: (t.count("{"), -len(t)))
        self._templates = [(compile_path(t)[0], t.replace(":path", "")) for t in ordered]
        self._seen.clear()

    def template(self, path: str) -> str:
        """The route template a concrete path matched (``unmatched`` if none)."""
        hit = self._seen.get(path)
        if hit is not None:
            return hit
        found = next((t for rx, t in self._templates if rx.match(path)), "unmatched")
        if len(self._seen) < 10_000:
            self._seen[path] = found
        return found

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one request."""
        key = (route, method)
        with self._lock:
            hist = self._hist.get(key)
            if hist is None:
                hist = self._hist[key] = ([0] * (len(BUCKETS) + 1), [0.0])
            hist[0][bisect.bisect_left(BUCKETS, seconds)] += 1
            hist[1][0] += seconds
            if status >= 400:
                ek = (route, method, f"{status // 100}xx" if status >= 500 else str(status))
                self._errors[ek] = self._errors.get(ek, 0) + 1

    def render(self) -> str:
        """Prometheus text of the histograms and error counters."""
        pid = os.getpid()
        out = [
            "# HELP memberlab_request_duration_seconds HTTP request latency per route.",
            "# TYPE memberlab_request_duration_seconds histogram",
        ]
        with self._lock:
            hist = {k: (list(v[0]), v[1][0]) for k, v in self._hist.items()}
            errors = dict(self._errors)
        for (route, method), (counts, total) in sorted(hist.items()):
            labels = f'route="{_esc(route)}",method="{method}",worker="{pid}"'
            cum = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                cum += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'memberlab_request_duration_seconds_bucket{{{labels},le="{le}"}} {cum}')
            out.append(f"memberlab_request_duration_seconds_sum{{{labels}}} {total!r}")
            out.append(f"memberlab_request_duration_seconds_count{{{labels}}} {cum}")
        out += [
            "# HELP memberlab_request_errors_total HTTP responses with status >= 400 per route.",
            "# TYPE memberlab_request_errors_total counter",
        ]
        for (route, method, status), n in sorted(errors.items()):
            out.append(
                f'memberlab_request_errors_total{{route="{_esc(route)}",method="{method}",'
                f'status="{status}",worker="{pid}"}} {n}'
            )
        return "\n".join(out) + "\n"


def _esc(s: Any) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
