"""``kill -9`` of every server process during a stream of events loses no acknowledged
event and counts none twice; after a restart the policy resumes from its snapshot."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from _service_server import Keys, Server

from memberlab.store import Store

T0 = 1_767_225_600.0


@pytest.mark.slow
def test_sigkill_during_event_stream_loses_nothing_acknowledged(
    serve: Callable[..., Server], keys: Keys, database_url: str
) -> None:
    env = {"MEMBERLAB_LEASE_TTL": "2"}
    args = ("--workers", "2", "--train-interval", "0.05", "--attribution-window", "1")
    server = serve(*args, env=env)
    with server.client(keys.admin) as c:
        for item in ("a", "b", "c"):
            assert c.put(f"/v1/callouts/items/{item}", json={"attributes": {"k": item}}).is_success
        decisions = []
        for i in range(40):
            r = c.post("/v1/callouts/decisions", json={"context": {"i": str(i % 4)}})
            assert r.status_code == 200, r.text
            decisions.append(r.json())
        version_before = c.get("/healthz").json()["policy_version"]

    acked: set[str] = set()
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def stream(worker: int) -> None:
        with server.client(keys.decide, timeout=5.0) as c:
            n = 0
            while not stop.is_set():
                batch = []
                for j in range(10):
                    d = decisions[(n + j) % len(decisions)]
                    eid = f"w{worker}-{n + j}"
                    batch.append(
                        {
                            "event_id": eid,
                            "decision_id": d["decision_id"],
                            "item_id": d["items"][0]["item_id"],
                            "type": "click",
                        }
                    )
                # every batch also repeats an already-sent id: it must count once
                batch.append({**batch[0], "event_id": f"w{worker}-{max(n - 1, 0)}"})
                with lock:
                    sent.update(e["event_id"] for e in batch)
                try:
                    r = c.post("/v1/events", json={"events": batch})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 202:
                    with lock:
                        acked.update(e["event_id"] for e in batch)
                n += 10

    threads = [threading.Thread(target=stream, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 600 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL to the whole process group: master and both workers
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) >= 600

    store = Store(database_url)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_id FROM events")).all()
    stored = [r[0] for r in rows]
    assert len(stored) == len(set(stored)), "an event id was stored twice"
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged events lost"
    assert set(stored) <= sent
    store.close()

    restarted = serve(*args, env=env)
    with restarted.client(keys.admin) as c:
        assert c.get("/v1/admin/stats").json()["events"] == len(stored)
        again = [
            {"event_id": e, "decision_id": decisions[0]["decision_id"], "type": "click"}
            for e in sorted(acked)
        ]
        for e in again:
            e["item_id"] = decisions[0]["items"][0]["item_id"]
        r = c.post("/v1/events", json={"events": again})
        assert r.status_code == 202 and r.json() == {"accepted": 0, "duplicates": len(again)}
        deadline = time.monotonic() + 20
        while True:  # the killed trainer's lease expires, then windows close
            stats = c.get("/v1/admin/stats").json()
            if stats["pending"] == 0:
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.2)
        assert stats["policy_version"] >= version_before
        assert stats["closed"] == 40
        assert c.post("/v1/callouts/decisions", json={}).status_code == 200


@pytest.mark.slow
def test_sigkill_during_a_decision_stream_loses_no_acknowledged_decision(
    serve: Callable[..., Server], keys: Keys, database_url: str
) -> None:
    """Decisions are group-committed (several requests share one transaction): each is
    answered only after its transaction committed, so a kill loses none answered."""
    server = serve("--workers", "2", "--train-interval", "0.2", "--attribution-window", "1")
    with server.client(keys.admin) as c:
        for item in ("a", "b", "c"):
            assert c.put(f"/v1/callouts/items/{item}", json={"attributes": {"k": item}}).is_success
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def stream() -> None:
        with server.client(keys.decide, timeout=5.0) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/callouts/decisions", json={"context": {"k": "a"}})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(r.json()["decision_id"])

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) >= 300
    store = Store(database_url)
    with store.engine.connect() as conn:
        stored = {r[0] for r in conn.execute(sa.text("SELECT decision_id FROM decisions"))}
        impressions = {
            r[0] for r in conn.execute(sa.text("SELECT DISTINCT decision_id FROM impressions"))
        }
    store.close()
    lost = set(acked) - stored
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged decisions lost"
    assert set(acked) <= impressions, "an acknowledged decision lost its impressions"
