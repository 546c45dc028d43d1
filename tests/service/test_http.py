"""The service through a real ``memberlab serve`` process over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from _service_server import Keys, Server

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    return r.json()


def put_items(c: httpx.Client, items: dict[str, dict[str, Any]]) -> None:
    for item_id, attrs in items.items():
        ok(c.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs}))


def decide(c: httpx.Client, t: float, **body: Any) -> dict[str, Any]:
    return ok(c.post("/v1/callouts/decisions", json={"context": {}, "timestamp": iso(t), **body}))


def click(c: httpx.Client, eid: str, d: dict[str, Any], t: float, **extra: Any) -> Any:
    ev = {
        "event_id": eid,
        "decision_id": d["decision_id"],
        "item_id": d["items"][0]["item_id"],
        "type": "click",
        "timestamp": iso(t),
        **extra,
    }
    return c.post("/v1/events", json={"events": [ev]})


ITEMS = {
    "good": {"benefit": "video", "colour": "blue"},
    "meh": {"benefit": "music", "colour": "red"},
    "bad": {"benefit": "photos", "colour": "grey"},
}
TRUTH = {"good": 0.45, "meh": 0.08, "bad": 0.03}


@pytest.mark.slow
def test_full_loop_learns_a_better_policy(serve: Callable[..., Server], keys: Keys) -> None:
    """Items, decisions, clicks delayed by up to a minute, trainer steps: the share of
    the best item grows from about a third to a clear majority (seed 1, 3 x 150 shoppers)."""
    server = serve("--attribution-window", "120", "--train-interval", "0")
    rng = np.random.default_rng(1)
    with server.client(keys.admin) as c:
        put_items(c, ITEMS)
        t = T0
        shares = []
        n_events = 0
        for _ in range(4):
            served = []
            pending: list[tuple[float, dict[str, Any]]] = []
            for _ in range(150):
                t += 1.0
                d = decide(c, t)
                item = d["items"][0]["item_id"]
                served.append(item)
                assert 0 < d["items"][0]["propensity"] <= 1
                if rng.random() < TRUTH[item]:
                    pending.append((t + float(rng.uniform(1, 60)), d))
            for n, (te, d) in enumerate(pending):
                ok(click(c, f"e{n_events + n}", d, te), 202)
            n_events += len(pending)
            t += 200.0  # let every window close on the data clock
            ok(c.post("/v1/callouts/decisions", json={"timestamp": iso(t)}))
            step = ok(c.post("/v1/admin/train"))
            assert step["ran"] and step["clock"] == "data"
            shares.append(served.count("good") / len(served))
        stats = ok(c.get("/v1/admin/stats"))
        assert stats["decisions"] == 4 * 151 and stats["events"] == n_events
        assert stats["pending"] == 1  # the last clock-advancing decision
        listed = {i["item_id"]: i for i in ok(c.get("/v1/callouts/items"))["items"]}
    assert shares[0] < 0.6 and shares[-1] > 0.6, shares
    assert listed["good"]["mean"] > listed["bad"]["mean"]
    assert listed["good"]["lower"] <= listed["good"]["mean"] <= listed["good"]["upper"]


def test_auth_and_scopes(serve: Callable[..., Server], keys: Keys) -> None:
    server = serve("--train-interval", "0")
    with server.client() as anon, server.client("wrong") as bad:
        for c in (anon, bad):
            for method, path in [
                ("GET", "/v1/callouts/items"),
                ("POST", "/v1/callouts/decisions"),
                ("POST", "/v1/events"),
                ("POST", "/v1/admin/train"),
                ("GET", "/v1/admin/stats"),
            ]:
                r = c.request(method, path, json={})
                assert r.status_code == 401, (method, path, r.text)
                assert "message" in r.json()
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/metrics").status_code == 200
    with server.client(keys.decide) as dec, server.client(keys.admin) as adm:
        assert dec.put("/v1/callouts/items/a", json={"attributes": {"x": "1"}}).status_code == 403
        put_items(adm, {"a": {"x": "1"}})
        d = decide(dec, T0)
        assert d["items"][0]["item_id"] == "a"
        ok(click(dec, "e1", d, T0 + 1), 202)
        for path in ["/v1/admin/train", "/v1/admin/priors/refit"]:
            r = dec.post(path)
            assert r.status_code == 403 and "admin" in r.json()["message"]
        assert dec.get("/v1/admin/stats").status_code == 403
        assert dec.get("/v1/callouts/items").status_code == 403
        assert dec.delete("/v1/callouts/items/a").status_code == 403
        ok(adm.post("/v1/admin/train"))
        ok(adm.get("/v1/admin/stats"))


def test_bad_input_gets_a_4xx_with_a_json_message(serve: Callable[..., Server], keys: Keys) -> None:
    server = serve("--train-interval", "0")
    with server.client(keys.admin) as c:
        r = c.post("/v1/callouts/decisions", json={"context": {}})
        assert r.status_code == 409  # no items yet
        put_items(c, {"a": {"benefit": "video", "price": 5.0}, "b": {"benefit": "music"}})
        d = decide(c, T0)
        served = d["items"][0]["item_id"]
        other = "b" if served == "a" else "a"
        ev = {"event_id": "x", "decision_id": d["decision_id"], "item_id": served, "type": "click"}
        cases: list[tuple[str, str, Any, int, str]] = [
            # wrong types
            ("POST", "/v1/callouts/decisions", {"context": []}, 422, "context"),
            ("POST", "/v1/callouts/decisions", {"k": "two"}, 422, "k"),
            ("POST", "/v1/callouts/decisions", {"k": 0}, 422, "k"),
            ("POST", "/v1/callouts/decisions", {"context": {"a": {"nested": 1}}}, 422, "context"),
            ("POST", "/v1/callouts/decisions", {"contxt": {}}, 422, "contxt"),
            ("POST", "/v1/events", {"events": [{**ev, "type": "view"}]}, 422, "type"),
            ("POST", "/v1/events", {"events": [{**ev, "value": "lots"}]}, 422, "value"),
            ("POST", "/v1/events", {"events": []}, 422, "events"),
            ("POST", "/v1/events", {"events": [{"event_id": "y"}]}, 422, "decision_id"),
            ("PUT", "/v1/callouts/items/c", {"attributes": "video"}, 422, "attributes"),
            ("PUT", "/v1/callouts/items/c", {"attributes": {"price": "cheap"}}, 422, "price"),
            # unknown item, unknown decision, item not served, k too large
            ("POST", "/v1/callouts/decisions", {"candidates": ["zzz"]}, 404, "zzz"),
            ("DELETE", "/v1/callouts/items/zzz", None, 404, "zzz"),
            ("POST", "/v1/events", {"events": [{**ev, "decision_id": "nope"}]}, 404, "nope"),
            ("POST", "/v1/events", {"events": [{**ev, "item_id": other}]}, 422, other),
            ("POST", "/v1/callouts/decisions", {"k": 3}, 422, "k == 3"),
            ("POST", "/v1/callouts/decisions", {"candidates": ["a"], "k": 2}, 422, "k == 2"),
            ("POST", "/v1/callouts/decisions", {"candidates": ["a", "a"]}, 422, "repeat"),
            # bad timestamps
            ("POST", "/v1/callouts/decisions", {"timestamp": "yesterday"}, 422, "timestamp"),
            ("POST", "/v1/callouts/decisions", {"timestamp": "2026-13-45T99:00:00Z"}, 422, "time"),
            ("POST", "/v1/events", {"events": [{**ev, "timestamp": "soon"}]}, 422, "timestamp"),
        ]
        for method, path, body, status, needle in cases:
            r = c.request(method, path, json=body)
            assert r.status_code == status, (path, body, r.status_code, r.text)
            assert needle in r.json()["message"] + json.dumps(r.json()["detail"]), r.text
        # malformed JSON, NaN, wrong content, oversized bodies
        for raw in [b"{", b'{"context": {"x": NaN}}', b"\xff\xfe", b"[]", b"null"]:
            r = c.post(
                "/v1/callouts/decisions",
                content=raw,
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422, (raw, r.text)
            assert r.json()["message"]
        big = {"events": [{**ev, "event_id": f"e{i}" + "x" * 100} for i in range(10_000)]}
        r = c.post("/v1/events", json=big)
        assert r.status_code == 413 and "exceeds" in r.json()["message"]
        r = c.post("/v1/callouts/decisions", content=b"{" * 2_000_000)
        assert r.status_code == 413
        # nothing above was stored
        stats = ok(c.get("/v1/admin/stats"))
        assert (stats["decisions"], stats["events"]) == (1, 0)


def test_duplicate_early_and_late_events(serve: Callable[..., Server], keys: Keys) -> None:
    """An event id counts once; an event a little before its decision (clock skew) or
    before its window closes counts when the window closes; a late one counts zero."""
    server = serve("--attribution-window", "60", "--train-interval", "0")
    with server.client(keys.admin) as c:
        put_items(c, {"a": {"benefit": "video"}})
        d1, d2, d3 = (decide(c, T0 + i) for i in range(3))
        assert ok(click(c, "e1", d1, T0 + 10), 202) == {"accepted": 1, "duplicates": 0}
        assert ok(click(c, "e1", d1, T0 + 10), 202) == {"accepted": 0, "duplicates": 1}
        assert ok(click(c, "e1", d2, T0 + 10), 202) == {"accepted": 0, "duplicates": 1}
        ok(click(c, "early", d2, T0 - 5), 202)  # 6 s before d2 was logged
        ok(click(c, "late", d3, T0 + 100), 202)  # after d3's 60 s window
        batch = [
            {"event_id": "b1", "decision_id": d1["decision_id"], "item_id": "a", "type": "click"},
            {"event_id": "b1", "decision_id": d1["decision_id"], "item_id": "a", "type": "click"},
        ]
        assert ok(c.post("/v1/events", json={"events": batch}), 202) == {
            "accepted": 1,
            "duplicates": 1,
        }
        # data clock is at T0 + 100: every window has closed.
        step = ok(c.post("/v1/admin/train"))
        assert (step["closed"], step["positives"]) == (3, 2)
        stats = ok(c.get("/v1/admin/stats"))
        assert stats["events"] == 4 and stats["pending"] == 0 and stats["positives"] == 2
        assert ok(c.post("/v1/admin/train"))["closed"] == 0
        metrics = c.get("/metrics").text
        assert "memberlab_events_total 4.0" in metrics
        assert "memberlab_pending_impressions 0.0" in metrics


def test_snapshot_hot_swap_across_processes(serve: Callable[..., Server], keys: Keys) -> None:
    """Two server processes share one state: a snapshot trained through one is served by
    the other within the poll interval, without a restart; concurrent trainers never
    publish the same version twice or close an impression twice."""
    a = serve("--train-interval", "0", "--attribution-window", "10")
    b = serve("--train-interval", "0", "--attribution-window", "10")
    with a.client(keys.admin) as ca, b.client(keys.admin) as cb:
        put_items(ca, {"x": {"benefit": "video"}, "y": {"benefit": "music"}})
        v_items = ok(ca.get("/healthz"))["policy_version"]
        deadline = time.monotonic() + 5
        while ok(cb.get("/healthz"))["serving_version"] != v_items:
            assert time.monotonic() < deadline, "server b never saw the new items"
            time.sleep(0.05)
        ds = [decide(cb if i % 2 else ca, T0 + i) for i in range(40)]
        for i, d in enumerate(ds[::3]):
            ok(click(ca, f"c{i}", d, T0 + 45), 202)
        decide(ca, T0 + 100)  # moves the data clock past every window
        steps = [ok(c.post("/v1/admin/train")) for c in (ca, cb, ca, cb)]
        assert sum(s["closed"] for s in steps) == 40
        published = [s["policy_version"] for s in steps if s["closed"]]
        assert len(set(published)) == len(published)
        latest = max(published)
        deadline = time.monotonic() + 5
        while True:
            va, vb = (ok(c.get("/healthz"))["serving_version"] for c in (ca, cb))
            if va == vb == latest:
                break
            assert time.monotonic() < deadline, (va, vb, latest)
            time.sleep(0.05)
        assert decide(cb, T0 + 101)["policy_version"] == latest
        assert decide(ca, T0 + 102)["policy_version"] == latest


def test_workers_share_one_state(serve: Callable[..., Server], keys: Keys) -> None:
    """``--workers 2``: two uvicorn processes behind one port, same counts and versions."""
    server = serve("--workers", "2", "--train-interval", "0.5", "--attribution-window", "5")
    pids = set()
    with server.client(keys.admin) as c:
        put_items(c, {"x": {"benefit": "video"}, "y": {"benefit": "music"}})
        for i in range(30):
            d = decide(c, T0 + i)
            ok(click(c, f"w{i}", d, T0 + i + 1), 202)
        decide(c, T0 + 100)
        deadline = time.monotonic() + 20
        while ok(c.get("/v1/admin/stats"))["pending"] > 1:
            assert time.monotonic() < deadline, "background trainer did not close windows"
            time.sleep(0.2)
        stats = ok(c.get("/v1/admin/stats"))
        assert stats["decisions"] == 31 and stats["events"] == 30 and stats["positives"] == 30
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        with httpx.Client(base_url=server.base_url) as fresh:  # a new connection each time
            h = ok(fresh.get("/healthz"))
            pids.add(h["pid"])
            assert h["serving_version"] == stats["policy_version"] or h["serving_version"] > 0
    assert len(pids) == 2


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing is Linux's")
def test_workers_share_connections_opened_at_once(serve: Callable[..., Server]) -> None:
    """64 keep-alive connections opened at once are spread over both workers: on one
    shared socket the worker that woke first took them (64/0 and 63/1 were seen), and
    that one worker served nearly all the load. Each worker has its own SO_REUSEPORT
    socket; a binomial split of 64 below 16 happens with probability 3e-5."""
    server = serve("--workers", "2", "--train-interval", "0")
    for attempt in range(3):
        conns = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(64)]
        try:
            pids: dict[int, int] = {}
            for conn in conns:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            for conn in conns:
                data = b""
                while not data.endswith(b"}"):
                    data += conn.recv(65536)
                pid = json.loads(data.split(b"\r\n\r\n", 1)[1])["pid"]
                pids[pid] = pids.get(pid, 0) + 1
        finally:
            for conn in conns:
                conn.close()
        assert len(pids) == 2 and min(pids.values()) >= 16, (attempt, pids)


def test_layouts_define_decide_learn(serve: Callable[..., Server], keys: Keys) -> None:
    """A layout space over HTTP: define (idempotent, 409 on a different definition),
    decisions with propensities, rewards by decision id, the trainer learns the best
    layout (seed 2; true click rate 0.6 for one layout, 0.1 for the others)."""
    server = serve("--train-interval", "0", "--attribution-window", "30")
    spec = {"slots": {"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"]}, "context": ["device"]}
    rng = np.random.default_rng(2)
    with server.client(keys.admin) as c, server.client(keys.decide) as dec:
        assert ok(c.put("/v1/layouts/home", json=spec))["created"]
        assert not ok(c.put("/v1/layouts/home", json=spec))["created"]
        assert c.put("/v1/layouts/home", json={"slots": {"a": ["x"]}}).status_code == 409
        assert c.put("/v1/layouts/bad", json={"slots": {"a": []}}).status_code == 422
        assert dec.put("/v1/layouts/other", json=spec).status_code == 403
        assert dec.post("/v1/layouts/nope/decisions", json={}).status_code == 404
        assert dec.post("/v1/layouts/home/decisions", json={"context": [1]}).status_code == 422
        t, n_clicks, best = T0, 0, {"headline": "h2", "image": "i3"}
        for _round in range(3):
            served = []
            for _ in range(150):
                t += 1
                d = ok(
                    dec.post(
                        "/v1/layouts/home/decisions",
                        json={"context": {"device": "mobile"}, "timestamp": iso(t)},
                    )
                )
                assert 0 < d["propensity"] <= 1 and set(d["layout"]) == {"headline", "image"}
                served.append(d["layout"] == best)
                if rng.random() < (0.6 if d["layout"] == best else 0.1):
                    ev = {
                        "event_id": f"l{n_clicks}",
                        "decision_id": d["decision_id"],
                        "type": "click",
                        "timestamp": iso(t + 5),
                    }
                    ok(dec.post("/v1/events", json={"events": [ev]}), 202)
                    n_clicks += 1
            bad = {
                "event_id": "z",
                "decision_id": d["decision_id"],
                "item_id": "x",
                "type": "click",
            }
            assert dec.post("/v1/events", json={"events": [bad]}).status_code == 422
            t += 100
            ok(dec.post("/v1/layouts/home/decisions", json={"timestamp": iso(t)}))
            step = ok(c.post("/v1/admin/train"))
            assert step["details"]["layouts"]["home"] >= 150
        assert dec.get("/v1/layouts/home").status_code == 403
        board = ok(c.get("/v1/layouts/home"))["leaderboard"]
    assert np.mean(served) > 0.5, np.mean(served)
    assert board[0]["layout"] == best


def test_dashboard_and_its_data(serve: Callable[..., Server], keys: Keys) -> None:
    server = serve("--train-interval", "0")
    with server.client(keys.admin) as c:
        page = c.get("/dashboard")
        assert page.status_code == 200 and "memberlab decision service" in page.text
        put_items(c, {"a": {"benefit": "video"}, "b": {"benefit": "music"}})
        for i in range(10):
            decide(c, T0 + 30 * i)
        rows = ok(c.get("/v1/admin/traffic", params={"bucket": 60}))["rows"]
        assert sum(r["count"] for r in rows) == 10 and {r["start"] for r in rows} <= {
            T0 + 60 * j for j in range(5)
        }
        assert ok(c.get("/v1/layouts")) == {"spaces": []}
        assert c.get("/v1/admin/traffic", params={"bucket": -1}).status_code == 422
