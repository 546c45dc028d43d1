"""The hot routes read their own bodies (no FastAPI dependency solving, for speed), and
the two hottest (callout decisions, events) go around the app's middleware stack
(``memberlab.service._hotlane``): through a real ``memberlab serve`` they must answer
bad input, count in ``/metrics`` and document themselves as a typed body parameter
does."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from _service_server import Keys, Server


def _error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    body = r.json()
    assert set(body) >= {"error", "message"}, body
    return dict(body)


def test_decision_routes_check_keys_then_bodies(serve: Callable[..., Server], keys: Keys) -> None:
    server = serve("--train-interval", "0")
    admin, user = server.client(keys.admin), server.client(keys.decide)
    assert admin.put("/v1/callouts/items/a", json={"attributes": {"benefit": "x"}}).is_success
    space = {"slots": {"headline": ["h1", "h2"]}}
    assert admin.put("/v1/layouts/hero", json=space).is_success
    for path in ("/v1/callouts/decisions", "/v1/layouts/hero/decisions"):
        anon = server.client()
        # the key is checked before the body, as a Depends(require_decide) route does
        assert _error(anon.post(path, content=b"{not json"), 401)["error"] == "unauthorized"
        wrong = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer nope"})
        assert _error(wrong.post(path, json={}), 401)["error"] == "unauthorized"
        basic = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Basic {keys.decide}"}
        )
        assert _error(basic.post(path, json={}), 401)["error"] == "unauthorized"
        bad = _error(user.post(path, content=b"{not json"), 422)
        assert bad["error"] == "invalid_request" and "body" in str(bad["message"]), bad
        extra = _error(user.post(path, json={"context": {}, "bogus": 1}), 422)
        assert extra["detail"][0]["loc"] == ["body", "bogus"], extra  # type: ignore[index]
        ctx = _error(user.post(path, json={"context": []}), 422)
        assert ctx["detail"][0]["loc"] == ["body", "context"], ctx  # type: ignore[index]
        assert user.post(path, json={"context": {"page": "films"}}).status_code == 200
    k = _error(user.post("/v1/callouts/decisions", json={"k": 0}), 422)
    assert k["detail"][0]["loc"] == ["body", "k"], k  # type: ignore[index]
    assert "body.k" in str(k["message"])
    # events: the same order of checks, and its own errors through the app's handlers
    anon = server.client()
    assert _error(anon.post("/v1/events", content=b"{not json"), 401)["error"] == "unauthorized"
    bad = _error(user.post("/v1/events", json={"events": [{"type": "click"}]}), 422)
    assert bad["detail"][0]["loc"][:3] == ["body", "events", 0], bad  # type: ignore[index]
    ev = {"event_id": "e", "decision_id": "nope", "item_id": "a", "type": "click"}
    missing = _error(user.post("/v1/events", json={"events": [ev]}), 404)
    assert missing["error"] == "unknown_decision" and missing["detail"] == ["nope"], missing
    d = user.post("/v1/callouts/decisions", json={}).json()
    ok = user.post("/v1/events", json={"events": [{**ev, "decision_id": d["decision_id"]}]})
    assert ok.status_code == 202 and ok.json() == {"accepted": 1, "duplicates": 0}, ok.text
    big = user.post("/v1/events", content=b"[" * 2_000_000)
    assert _error(big, 413)["error"] == "body_too_large"
    # other methods on the same paths still go through the app
    assert _error(user.get("/v1/events"), 405)["error"] == "method_not_allowed"
    # the hot lane's requests count in /metrics like every other route's
    text = server.client().get("/metrics").text
    for route, status in (("/v1/events", "404"), ("/v1/events", "413")):
        assert (
            f'memberlab_request_errors_total{{route="{route}",method="POST",status="{status}",'
            in text
        ), text[:2000]
    assert 'memberlab_request_duration_seconds_count{route="/v1/callouts/decisions"' in text


def test_decision_routes_document_their_bodies(serve: Callable[..., Server]) -> None:
    server = serve("--train-interval", "0")
    spec = server.client().get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, model, field in (
        ("/v1/callouts/decisions", "DecisionIn", "context"),
        ("/v1/layouts/{space}/decisions", "LayoutDecisionIn", "context"),
        ("/v1/events", "EventsIn", "events"),
    ):
        op = spec["paths"][path]["post"]
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
        assert op["security"] == [{"HTTPBearer": []}]
        assert field in schemas[model]["properties"]
    assert schemas["DecisionIn"]["properties"]["k"]["maximum"] == 100
