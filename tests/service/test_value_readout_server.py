"""The holdout readout and the log pages of the value objective, through a real
``memberlab serve --objective value --holdout-fraction 0.5`` process and the CLI.

Under the value objective callout decisions are logged as kind ``value``: the readout
(``GET /v1/admin/experiment``, ``memberlab experiment readout``) and the log pages
(``GET /v1/admin/logs``, ``memberlab logs export``) read that kind, the endpoints'
default kind is the one that serves callouts, and an explicit ``kind=callouts`` that
finds no decision says where they are instead of answering an empty readout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from _choice_model import fit_choice_model
from _service_server import Keys, Server

from memberlab.value import values_from_model

PRICES = ("--price", "monthly=1.5", "--price", "annual=14")
STATE = {"status": "none", "months_left": 0, "delivery": 2, "video": 0, "tier": 1}
ITEMS = {
    "deal": {"pitch": "deal", "benefit": "deals"},
    "annual": {"pitch": "annual", "benefit": "delivery"},
}
T0 = 1_700_000_000.0
UNITS = 30  # two decisions each


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_choice_model(tmp_path_factory.mktemp("value-readout-choice"))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "memberlab.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _pages(c: Any, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = c.get(
            "/v1/admin/logs",
            params={**params, "limit": 25, **({"cursor": cursor} if cursor else {})},
        )
        assert r.status_code == 200, r.text
        rows += r.json()["rows"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return rows


def test_value_objective_readout_and_logs(
    serve: Callable[..., Server], keys: Keys, model: Path, database_url: str, tmp_path: Path
) -> None:
    s = serve(
        *("--choice-model", str(model), "--objective", "value", "--value-horizon", "12"),
        *PRICES,
        *("--train-interval", "0", "--attribution-window", "60", "--holdout-fraction", "0.5"),
    )
    admin, decide = s.client(keys.admin), s.client(keys.decide)
    for item, attrs in ITEMS.items():
        assert admin.put(f"/v1/callouts/items/{item}", json={"attributes": attrs}).is_success
    events: list[dict[str, Any]] = []
    arms: dict[str, str] = {}
    for j in range(2 * UNITS):
        unit = f"u{j % UNITS}"
        body = {"context": STATE, "unit_id": unit, "timestamp": _iso(T0 + j)}
        r = decide.post("/v1/callouts/decisions", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert arms.setdefault(unit, out["assignment"]) == out["assignment"]
        item = out["items"][0]["item_id"]
        if j % 3 == 0:
            ev = {"decision_id": out["decision_id"], "item_id": item, "timestamp": _iso(T0 + j)}
            events.append({"event_id": f"c{j}", "type": "click", **ev})
            if j % 2 == 0:
                events.append({"event_id": f"v{j}", "type": "conversion", "plan": "annual", **ev})
    assert set(arms.values()) == {"holdout", "policy"}
    assert decide.post("/v1/events", json={"events": events}).status_code == 202
    # a decision far in the future moves the data clock past every window
    late = {"context": STATE, "timestamp": _iso(T0 + 10_000)}
    decide.post("/v1/callouts/decisions", json=late).raise_for_status()
    r = admin.post("/v1/admin/train")
    assert r.status_code == 200 and r.json()["details"]["value"] == {"": 2 * UNITS}, r.text

    # the readout of kind value: every closed decision, the reward the clicks
    r = admin.get("/v1/admin/experiment", params={"kind": "value"})
    assert r.status_code == 200, r.text
    value = r.json()
    assert value["ready"] is True, value
    arm_decisions = {a: v["decisions"] for a, v in value["arms"].items()}
    assert sum(arm_decisions.values()) == 2 * UNITS
    assert arm_decisions["holdout"] == 2 * sum(a == "holdout" for a in arms.values())
    clicks = sum(e["type"] == "click" for e in events)
    rewards = sum(v["decisions"] * v["reward_per_decision"] for v in value["arms"].values())
    assert rewards == pytest.approx(clicks)
    assert value["decisions_pending"] == 1
    assert value["query"]["kind"] == "value"
    # the default kind is the one serving callouts here
    r = admin.get("/v1/admin/experiment")
    assert r.status_code == 200 and r.json()["lift"] == value["lift"], r.text
    assert r.json()["query"]["kind"] == "value"
    # an explicit kind=callouts has no decision here, and says where they are
    r = admin.get("/v1/admin/experiment", params={"kind": "callouts"})
    assert r.status_code == 200, r.text
    empty = r.json()
    assert empty["ready"] is False and "kind 'value'" in empty["reason"], empty
    # the CLI reads the same readout from the database
    done = _cli("experiment", "readout", "--kind", "value", "--database-url", database_url,
                "--holdout-fraction", "0.5", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    assert cli["lift"] == value["lift"] and cli["arms"] == value["arms"]
    done = _cli("experiment", "readout", "--database-url", database_url, "--json")
    assert done.returncode == 0, done.stderr
    assert "kind 'value'" in json.loads(done.stdout)["reason"]

    # the log pages of kind value equal the export, plans included
    rows = _pages(admin, kind="value")
    assert rows == _pages(admin)  # the default kind serves callouts here
    assert len(rows) == 2 * UNITS + 1 and {r["kind"] for r in rows} == {"value"}
    assert sum(r["plan"] == "annual" for r in rows) == sum(
        e["type"] == "conversion" for e in events
    )
    out = tmp_path / "value.parquet"
    done = _cli(
        "logs", "export", "--kind", "value", "--out", str(out), "--database-url", database_url
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pylist()
    key = ("decision_id", "item", "reward", "plan", "assignment", "unit_id", "candidates")
    assert [tuple(t[k] for k in key) for t in table] == [tuple(r[k] for k in key) for r in rows]
    meta = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"memberlab"])
    assert meta["kind"] == "value" and meta["candidates_source"] == "logged", meta
    # member value as the reward: each conversion's plan valued in the member's state
    values = values_from_model(model, horizon=12, prices=[p for p in PRICES if "=" in p])
    annual = float(values.conversion_values(pd.DataFrame([STATE]), ["annual"])[0])
    assert annual > 0
    conversions = {a: 0 for a in ("holdout", "policy")}
    for e in events:
        if e["type"] == "conversion":
            conversions[
                next(r["assignment"] for r in rows if r["decision_id"] == e["decision_id"])
            ] += 1
    model_args = ("--choice-model", str(model), "--value-horizon", "12", *PRICES, "--json")
    for source in ((str(out),), ("--database-url", database_url)):
        done = _cli("experiment", "readout", *source, "--holdout-fraction", "0.5", *model_args)
        assert done.returncode == 0, done.stderr
        member = json.loads(done.stdout)
        assert member["arms"].keys() == value["arms"].keys()
        for a, v in member["arms"].items():
            assert v["decisions"] == value["arms"][a]["decisions"]
            total = v["decisions"] * v["reward_per_decision"]
            assert total == pytest.approx(conversions[a] * annual), (a, v)
        if source[0] == str(out):
            from_file = member
    assert member["lift"] == pytest.approx(from_file["lift"])
    r = admin.get("/v1/admin/logs", params={"kind": "callouts"})
    assert r.status_code == 200 and r.json()["rows"] == []
    assert "kind 'value'" in r.json()["note"], r.json()
