"""The baseline of benchmarks/service_load.py: the smallest FastAPI app that does the
same HTTP work as the decision service's two hot routes, and nothing else.

Each route parses the ``Authorization: Bearer`` header (FastAPI's ``HTTPBearer``, the
dependency memberlab uses) and a JSON body, and answers a JSON body of the same shape as
memberlab's, fixed. Routes are ``async def`` like memberlab's decision route, so neither
side pays a thread-pool hop. It is served by :func:`memberlab.service.launch.run_uvicorn`,
the function ``memberlab serve`` runs, so the uvicorn settings are the same, and it
freezes its heap at start-up as ``memberlab serve``'s workers do
(:mod:`memberlab.service._heap`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from memberlab.service._heap import freeze_startup_heap

_bearer = HTTPBearer(auto_error=False)


async def _key(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    if creds is None:
        raise HTTPException(401, "missing key")
    return creds.credentials


Key = Annotated[str, Depends(_key)]


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    freeze_startup_heap()
    yield


def create_app() -> FastAPI:
    app = FastAPI(lifespan=_lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/callouts/decisions")
    async def decide(body: dict[str, Any], _: Key) -> dict[str, Any]:
        return {
            "decision_id": "0" * 32,
            "items": [{"item_id": "free-delivery", "score": 0.5, "propensity": 0.5}],
            "policy_version": 1,
        }

    @app.post("/v1/events", status_code=202)
    async def events(body: dict[str, Any], _: Key) -> dict[str, int]:
        return {"accepted": len(body.get("events", [])), "duplicates": 0}

    return app
