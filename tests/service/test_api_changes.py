"""API defects of issue 8 through a real ``memberlab serve``: layout interactions as JSON
arrays, layout spaces that grow and retire, reading one item, and a trainer that says
when it will next have something to do."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _service_server import Keys, Server

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    return r.json()


SPACE = {"slots": {"headline": ["h1", "h2"], "image": ["i1", "i2"]}, "context": ["device"]}


def test_layout_spaces_take_arrays_grow_and_retire(
    serve: Callable[..., Server], keys: Keys
) -> None:
    server = serve("--train-interval", "0", "--attribution-window", "60")
    admin, user = server.client(keys.admin), server.client(keys.decide)
    # the form the docs show: interactions as JSON arrays (was 422 "valid tuple")
    spec = {**SPACE, "interactions": [["headline", "image"]]}
    out = ok(admin.put("/v1/layouts/hero", json=spec))
    assert out["created"] and out["definition"]["interactions"] == [["headline", "image"]]
    assert ok(admin.put("/v1/layouts/hero", json=spec))["created"] is False  # idempotent
    # teach it that h2 + i1 is good on mobile
    for n in range(60):
        d = ok(
            user.post(
                "/v1/layouts/hero/decisions",
                json={"context": {"device": "mobile"}, "timestamp": iso(T0 + n)},
            )
        )
        if d["layout"] == {"headline": "h2", "image": "i1"}:
            ev = {
                "event_id": f"e{n}",
                "decision_id": d["decision_id"],
                "type": "click",
                "timestamp": iso(T0 + n + 1),
            }
            ok(user.post("/v1/events", json={"events": [ev]}), 202)
    ok(user.post("/v1/layouts/hero/decisions", json={"timestamp": iso(T0 + 500)}))
    trained = ok(admin.post("/v1/admin/train"))
    assert trained["closed"] >= 60, trained
    before = {
        e["layout"]["headline"] + e["layout"]["image"]: e
        for e in ok(admin.get("/v1/layouts/hero"))["leaderboard"]
    }
    # gain a variant and a slot: 200 (was 409), learned weights of unchanged features kept
    grown = {
        "slots": {"headline": ["h1", "h2", "h3"], "image": ["i1", "i2"], "badge": ["b1", "b2"]},
        "interactions": [["headline", "image"]],
        "context": ["device"],
    }
    out = ok(admin.put("/v1/layouts/hero", json=grown))
    assert out["changed"] and not out["created"], out
    assert out["definition"]["slots"]["badge"] == ["b1", "b2"]
    after = ok(admin.get("/v1/layouts/hero"))["leaderboard"]
    best = after[0]["layout"]
    assert (best["headline"], best["image"]) == ("h2", "i1"), after[:3]
    assert after[0]["mean"] >= before["h2i1"]["mean"] - 1.0  # same learned main effects
    d = ok(user.post("/v1/layouts/hero/decisions", json={"context": {"device": "mobile"}}))
    assert set(d["layout"]) == {"headline", "image", "badge"}
    # removing a variant is still refused, saying how to start over
    shrunk = {"slots": {"headline": ["h1"], "image": ["i1", "i2"], "badge": ["b1", "b2"]}}
    r = admin.put("/v1/layouts/hero", json=shrunk)
    assert r.status_code == 409 and "DELETE" in r.json()["message"], r.text
    # retire it: its open impressions are dropped, decisions answer 404, it can be redefined
    out = ok(admin.delete("/v1/layouts/hero"))
    assert out["retired"] and out["dropped_pending"] >= 1, out
    time.sleep(0.7)  # workers stop serving it within snapshot_poll_interval (0.5 s)
    assert user.post("/v1/layouts/hero/decisions", json={}).status_code == 404
    assert admin.get("/v1/layouts/hero").status_code == 404
    assert admin.delete("/v1/layouts/hero").status_code == 404
    assert "hero" not in ok(admin.get("/v1/layouts"))["spaces"]
    assert ok(admin.post("/v1/admin/train"))["ran"]  # the trainer is not stuck on it
    assert ok(admin.put("/v1/layouts/hero", json=shrunk))["created"]


def test_one_item_can_be_read_and_bad_crosses_are_reported(
    serve: Callable[..., Server], keys: Keys
) -> None:
    server = serve("--train-interval", "0", "--crosses", "page:benefitt")
    admin = server.client(keys.admin)
    out = ok(admin.put("/v1/callouts/items/video", json={"attributes": {"benefit": "video"}}))
    assert len(out["warnings"]) == 1, out
    assert "benefitt" in out["warnings"][0] and "'benefit'" in out["warnings"][0]
    item = ok(admin.get("/v1/callouts/items/video"))  # was 405
    assert item["item_id"] == "video" and item["attributes"] == {"benefit": "video"}
    assert item["active"] is True and 0 <= item["mean"] <= 1
    r = admin.get("/v1/callouts/items/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    stats = ok(admin.get("/v1/admin/stats"))
    assert stats["crosses"] == ["page:benefitt"]
    assert stats["never_fired_crosses"] == ["page:benefitt"]


def test_train_says_why_nothing_was_done_and_when_the_next_window_closes(
    serve: Callable[..., Server], keys: Keys
) -> None:
    """After a click, the first train step used to say only "nothing to do" for the whole
    attribution window (an hour by default)."""
    server = serve("--train-interval", "0")  # the default window: 3600 s, wall clock
    admin, user = server.client(keys.admin), server.client(keys.decide)
    ok(admin.put("/v1/callouts/items/a", json={"attributes": {"benefit": "video"}}))
    empty = ok(admin.post("/v1/admin/train"))
    assert "no impression is waiting" in empty["reason"], empty
    assert empty["next_window_closes_at"] is None
    t = time.time()
    d = ok(user.post("/v1/callouts/decisions", json={}))
    ev = {"event_id": "c1", "decision_id": d["decision_id"], "item_id": "a", "type": "click"}
    ok(user.post("/v1/events", json={"events": [ev]}), 202)
    out = ok(admin.post("/v1/admin/train"))
    assert out["closed"] == 0 and out["pending"] == 1, out
    assert 3500 < out["next_window_closes_in"] <= 3600, out
    assert abs(out["next_window_closes_at"] - (t + 3600)) < 60
    assert "3600 s" in out["reason"] and "next closes at" in out["reason"], out["reason"]
    stats = ok(admin.get("/v1/admin/stats"))
    assert (
        stats["pending"] == 1
        and abs(stats["next_window_closes_at"] - out["next_window_closes_at"]) < 1e-6
    )
    assert stats["attribution_window"] == 3600 and stats["clock"] == "wall"
    text = httpx.get(f"{server.base_url}/metrics").text
    assert "memberlab_next_window_closes_in_seconds 3" in text


def test_docs_are_served_without_a_cdn_and_metrics_count_per_route(
    serve: Callable[..., Server], keys: Keys
) -> None:
    server = serve("--train-interval", "0")
    c = server.client()
    page = ok_text(c.get("/docs"))
    assert "cdn" not in page.lower() and "/static/swagger/swagger-ui-bundle.js" in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = c.get(f"/static/swagger/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
    assert c.get("/openapi.json").status_code == 200
    admin = server.client(keys.admin)
    for _ in range(3):
        admin.get("/v1/callouts/items/missing")
    server.client("mlk_admin_wrong").get("/v1/admin/stats")
    text = c.get("/metrics").text
    route = 'route="/v1/callouts/items/{item_id}",method="GET"'
    assert f"memberlab_request_errors_total{{{route}," in text and 'status="404"' in text
    line = next(
        ln for ln in text.splitlines() if ln.startswith("memberlab_request_errors_total{" + route)
    )
    assert line.endswith(" 3"), line
    assert (
        'memberlab_request_errors_total{route="/v1/admin/stats",method="GET",status="401"' in text
    )
    count = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("memberlab_request_duration_seconds_count{" + route)
    )
    assert count.endswith(" 3"), count
    assert "# TYPE memberlab_request_duration_seconds histogram" in text


def ok_text(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.text


def test_a_served_worker_freezes_its_heap_and_reports_its_collections(
    serve: Callable[..., Server], keys: Keys, tmp_path: Path
) -> None:
    """``memberlab serve``'s workers freeze the heap they start with, so Python's full
    collections do not walk it mid-traffic (they took 140-280 ms each); /metrics shows it."""
    import gc

    server = serve("--train-interval", "0")
    text = server.client().get("/metrics").text
    frozen = next(ln for ln in text.splitlines() if ln.startswith("memberlab_gc_frozen_objects{"))
    assert float(frozen.rsplit(" ", 1)[1]) > 100_000, frozen  # the imported libraries and app
    assert 'memberlab_gc_collections_total{generation="2",worker="' in text
    # an app started in a process that builds and drops apps (this test run) does not
    from fastapi.testclient import TestClient

    from memberlab.service import Settings, create_app

    before = gc.get_freeze_count()
    url = f"sqlite:///{tmp_path}/other.db"
    with TestClient(create_app(Settings(database_url=url, train_interval=0))) as client:
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == before
