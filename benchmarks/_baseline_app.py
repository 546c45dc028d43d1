"""The baseline of benchmarks/service_load.py: the smallest FastAPI app that answers the
same requests (a decision and an event batch) with fixed bodies, served by uvicorn with
the same settings as ``memberlab serve`` (workers, host, no access log)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/callouts/decisions")
    def decide(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "decision_id": "0" * 32,
            "items": [{"item_id": "free-delivery", "score": 0.5, "propensity": 0.5}],
            "policy_version": 1,
        }

    @app.post("/v1/events", status_code=202)
    def events(body: dict[str, Any]) -> dict[str, int]:
        return {"accepted": len(body.get("events", [])), "duplicates": 0}

    return app
