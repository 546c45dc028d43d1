"""The value objective through a real ``memberlab serve --objective value`` process:
CLI errors, state columns, conversion events, training, the value ranking, scenario
comparison."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _choice_model import fit_choice_model
from _service_server import Keys, Server

from memberlab.store import Store

PRICES = ("--price", "monthly=1.5", "--price", "annual=14")
#: a state of the fitted model's panel (columns of tests/service/_choice_model.STATE)
STATE = {"status": "none", "months_left": 0, "delivery": 2, "video": 0, "tier": 1}
ITEMS = {
    "deal": {"pitch": "deal", "benefit": "deals"},
    "annual": {"pitch": "annual", "benefit": "delivery"},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_choice_model(tmp_path_factory.mktemp("value-choice"))


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "memberlab.cli.main", "serve", "--port", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_value_objective_needs_a_fitted_choice_model(tmp_path: Path, model: Path) -> None:
    done = _serve_cli("--objective", "value")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --objective value needs --choice-model DIR, DIR written by 'memberlab choice fit'."
    ]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "results.json").write_text("{not json")
    for bad in (tmp_path / "nowhere", tmp_path / "junk"):
        done = _serve_cli("--choice-model", str(bad), "--objective", "value", *PRICES)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "is not a model written by 'memberlab choice fit'" in lines[0]
    # the test model has no price_<plan> columns: without --price, a one-line error
    done = _serve_cli("--choice-model", str(model), "--objective", "value")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--price ACTION=COLUMN|AMOUNT" in lines[0], lines
    done = _serve_cli("--choice-model", str(model), "--objective", "value", "--price", "gold=3")
    assert done.returncode == 2 and "'gold'" in done.stderr


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _put_items(c: Any) -> None:
    for item, attrs in ITEMS.items():
        r = c.put(f"/v1/callouts/items/{item}", json={"attributes": attrs})
        assert r.status_code == 200, r.text


def test_value_objective_end_to_end(
    serve: Callable[..., Server], keys: Keys, model: Path, database_url: str
) -> None:
    s = serve(
        *("--choice-model", str(model), "--objective", "value", "--value-horizon", "12"),
        *PRICES,
        *("--train-interval", "0", "--attribution-window", "60"),
    )
    admin, decide = s.client(keys.admin), s.client(keys.decide)
    _put_items(admin)
    # state columns are required by name
    r = decide.post("/v1/callouts/decisions", json={"context": {"page": "home"}})
    assert r.status_code == 422 and "'status'" in r.json()["message"], r.text
    r = decide.post("/v1/callouts/decisions", json={"context": {**STATE, "tier": 7}})
    assert r.status_code == 422 and "'tier'" in r.json()["message"], r.text
    t0 = 1_700_000_000.0
    ids = []
    for j in range(40):
        r = decide.post(
            "/v1/callouts/decisions",
            json={"context": {**STATE, "page": "home"}, "timestamp": _iso(t0 + j)},
        )
        assert r.status_code == 200, r.text
        item = r.json()["items"][0]
        assert 0 < item["propensity"] <= 1 and item["score"] >= 0
        ids.append((r.json()["decision_id"], item["item_id"]))
    did, item = ids[0]
    ev = {"decision_id": did, "item_id": item, "timestamp": _iso(t0 + 1)}
    bad = [
        ({"type": "conversion", "plan": "gold"}, "known plans: ['annual', 'monthly']"),
        ({"type": "conversion"}, "must name its plan"),
        ({"type": "conversion", "plan": "none"}, "known plans"),  # the anchor is no plan
        ({"type": "click", "plan": "annual"}, "carries no plan"),
    ]
    for extra, msg in bad:
        r = decide.post("/v1/events", json={"events": [{"event_id": "x", **ev, **extra}]})
        assert r.status_code == 422 and msg in r.json()["message"], r.text
    events = []
    for n, (did, item) in enumerate(ids):
        events.append(
            {
                "event_id": f"c{n}",
                "decision_id": did,
                "item_id": item,
                "type": "click",
                "timestamp": _iso(t0 + n + 1),
            }
        )
        if n % 2 == 0:
            plan = "annual" if item == "annual" else "monthly"
            events.append(
                {
                    "event_id": f"v{n}",
                    "decision_id": did,
                    "item_id": item,
                    "type": "conversion",
                    "plan": plan,
                    "timestamp": _iso(t0 + n + 2),
                }
            )
    r = decide.post("/v1/events", json={"events": events})
    assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text
    # a decision far in the future moves the data clock past every window
    decide.post(
        "/v1/callouts/decisions", json={"context": STATE, "timestamp": _iso(t0 + 10_000)}
    ).raise_for_status()
    r = admin.post("/v1/admin/train")
    assert r.status_code == 200 and r.json()["closed"] >= 40, r.text
    assert r.json()["details"]["value"] == {"": 40}
    assert r.json()["pending"] == 1  # the last decision's window is open (kind "value")
    store = Store(database_url)
    try:
        snap = store.load_snapshot("value")
        assert snap is not None and snap.data.startswith(b"MEMBERLAB-POLICY\n")
        closed = store.closed_impressions("value")
    finally:
        store.close()
    assert len(closed) == 40 and all(c.reward == 1.0 for c in closed)
    # the value ranking: per callout, expected value next to the click rate
    r = admin.get("/v1/admin/value", params={"state": json.dumps(STATE)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == STATE and body["policy_version"] >= 1
    assert [p["plan"] for p in body["plans"]] == ["annual", "monthly"]
    assert body["plans"][0]["value"] > 0
    rows = {i["item_id"]: i for i in body["items"]}
    assert set(rows) == set(ITEMS)
    for row in rows.values():
        assert row["expected_value_lower"] <= row["expected_value"] <= row["expected_value_upper"]
        assert row["click_rate_lower"] <= row["click_rate"] <= row["click_rate_upper"]
        assert row["enough_data"] is False  # under the 30 closed impressions each
    served = {i for _, i in ids}
    assert sum(rows[i]["observations"] for i in served) == 40
    assert body["states"] and all(set(st) == set(STATE) for st in body["states"])
    r = admin.get("/v1/admin/value", params={"state": json.dumps({"status": "none"})})
    assert r.status_code == 422 and "'months_left'" in r.json()["message"]
    assert decide.get("/v1/admin/value").status_code == 403
    # scenario comparison at the admin endpoint
    r = admin.post(
        "/v1/admin/choice/compare",
        json={
            "scenarios": {
                "cheaper": "--reward-shift monthly=0.3",
                "video": "--reward-shift annual=0.5",
            },
            "price": ["monthly=1.5", "annual=14"],
            "months": 6,
            "members": 500,
            "seed": 3,
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out["ranking"]["revenue"]) == {"cheaper", "video"}
    r = admin.post("/v1/admin/choice/compare", json={"scenarios": {"x": "--reward-shift gold=1"}})
    assert r.status_code == 422 and "gold" in r.json()["message"], r.text


def test_click_objective_has_no_value_ranking(serve: Callable[..., Server], keys: Keys) -> None:
    s = serve("--train-interval", "0")
    r = s.client(keys.admin).get("/v1/admin/value")
    assert r.status_code == 404 and "--objective value" in r.json()["message"]
    start = time.monotonic()
    r = s.client(keys.admin).post("/v1/admin/choice/compare", json={"scenarios": {"a": "x"}})
    assert r.status_code == 404 and time.monotonic() - start < 10
