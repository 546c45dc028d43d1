"""The decision routes read their own bodies (no FastAPI dependency solving, for speed):
through a real ``memberlab serve`` they must answer bad input and document themselves as
a typed body parameter does."""

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


def test_decision_routes_document_their_bodies(serve: Callable[..., Server]) -> None:
    server = serve("--train-interval", "0")
    spec = server.client().get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, model in (
        ("/v1/callouts/decisions", "DecisionIn"),
        ("/v1/layouts/{space}/decisions", "LayoutDecisionIn"),
    ):
        op = spec["paths"][path]["post"]
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
        assert op["security"] == [{"HTTPBearer": []}]
        assert "context" in schemas[model]["properties"]
    assert schemas["DecisionIn"]["properties"]["k"]["maximum"] == 100
