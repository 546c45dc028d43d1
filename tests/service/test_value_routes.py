"""Under ``--objective value`` every callout route reads the policy that serves and learns
callout decisions (kind ``"value"``), through a real ``memberlab serve`` process: items,
rates, stats, traffic, train, refit, health and metrics show what the value policy's
click model learned and its versions, not the clicks policy (which never learns there).
``memberlab logs export --kind value`` reads each row's plan with the service's
configured early hold."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _choice_model import fit_choice_model
from _service_server import Keys, Server
from typer.testing import CliRunner

from memberlab.cli.main import app
from memberlab.store import Store

PRICES = ("--price", "monthly=1.5", "--price", "annual=14")
STATE = {"status": "none", "months_left": 0, "delivery": 2, "video": 0, "tier": 1}
ITEMS = {
    "deal": {"pitch": "deal", "benefit": "deals"},
    "annual": {"pitch": "annual", "benefit": "delivery"},
}
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_choice_model(tmp_path_factory.mktemp("value-routes-choice"))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, flags=re.M)
    assert m is not None, f"{name} missing from /metrics"
    return float(m.group(1))


def _rates(c: Any) -> dict[str, float]:
    r = c.post("/v1/callouts/rates", json={"context": {**STATE, "page": "home"}})
    assert r.status_code == 200, r.text
    return {i["item_id"]: i["mean"] for i in r.json()["items"]}


def test_callout_routes_read_the_value_policy(
    serve: Callable[..., Server], keys: Keys, model: Path, database_url: str
) -> None:
    s = serve(
        *("--choice-model", str(model), "--objective", "value", *PRICES),
        *("--train-interval", "0", "--attribution-window", "60"),
        env={"MEMBERLAB_EARLY_HOLD": "600"},  # the default is 60 s
    )
    admin, decide = s.client(keys.admin), s.client(keys.decide)
    for item, attrs in ITEMS.items():
        admin.put(f"/v1/callouts/items/{item}", json={"attributes": attrs}).raise_for_status()
    prior = _rates(admin)
    assert prior["deal"] == pytest.approx(prior["annual"], abs=1e-9)  # nothing learned yet
    v0 = admin.get("/v1/callouts/items").json()["policy_version"]
    # 60 decisions; the annual callout is always clicked, the deal callout never
    events = []
    for j in range(60):
        r = decide.post(
            "/v1/callouts/decisions",
            json={"context": {**STATE, "page": "home"}, "timestamp": _iso(T0 + j)},
        )
        assert r.status_code == 200, r.text
        did, item = r.json()["decision_id"], r.json()["items"][0]["item_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", did), did  # the one decision-id rule
        if item == "annual":
            events.append(
                {"event_id": f"c{j}", "decision_id": did, "item_id": item, "type": "click",
                 "timestamp": _iso(T0 + j + 1)}
            )  # fmt: skip
        if j == 0:  # a conversion stamped 300 s before its decision: inside the 600 s hold
            events.append(
                {"event_id": "early", "decision_id": did, "item_id": item, "type": "conversion",
                 "plan": "annual", "timestamp": _iso(T0 - 300)}
            )  # fmt: skip
            early = did
    served = 60
    decide.post("/v1/events", json={"events": events}).raise_for_status()
    decide.post(  # moves the data clock past every window
        "/v1/callouts/decisions", json={"context": STATE, "timestamp": _iso(T0 + 10_000)}
    ).raise_for_status()
    served += 1
    r = admin.post("/v1/admin/train")
    assert r.status_code == 200 and r.json()["closed"] == 60, r.text
    store = Store(database_url)
    try:
        latest = store.latest_version("value")
    finally:
        store.close()
    assert latest > v0
    assert r.json()["policy_version"] == latest  # the value policy's version, not clicks'

    # items and rates: learned click rates of the value policy's click model
    items = admin.get("/v1/callouts/items").json()
    assert items["policy_version"] == latest
    by_id = {i["item_id"]: i for i in items["items"]}
    n_annual = len(events) - 1
    assert by_id["annual"]["observations"] == n_annual and by_id["annual"]["clicks"] == n_annual
    assert by_id["deal"]["observations"] == 60 - n_annual and by_id["deal"]["clicks"] == 0
    if 0 < n_annual < 60:
        assert by_id["annual"]["mean"] > by_id["deal"]["mean"]
    one = admin.get("/v1/callouts/items/annual").json()
    assert one["mean"] == pytest.approx(by_id["annual"]["mean"])
    learned = _rates(admin)
    r = admin.post("/v1/callouts/rates", json={"context": {**STATE, "page": "home"}})
    assert r.json()["policy_version"] == latest
    assert learned != prior
    if n_annual:
        assert learned["annual"] > prior["annual"]
    if n_annual < 60:
        assert learned["deal"] < prior["deal"]

    # stats, traffic, health, metrics: the value kind
    st = admin.get("/v1/admin/stats").json()
    assert st["policy_version"] == latest
    traffic = admin.get("/v1/admin/traffic", params={"bucket": 86_400}).json()
    assert sum(row["count"] for row in traffic["rows"]) == served
    health = admin.get("/healthz").json()
    assert health["policy_version"] == latest and health["serving_version"] == latest
    text = admin.get("/metrics").text
    assert _metric(text, "memberlab_policy_version") == latest
    assert _metric(text, "memberlab_serving_policy_version") == latest

    # the refit: the value policy, from its own closed impressions (with their plans)
    r = admin.post("/v1/admin/priors/refit", json={"method": "naive"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["n_feedback"] == 60
    assert out["policy_version"] == latest + 1
    assert set(out["models"]) == {"click", "annual", "monthly"}
    assert admin.get("/v1/callouts/items").json()["policy_version"] == latest + 1

    # the export reads the plan with the configured early hold, as the trainer learned it
    out_file = Path(s.log_path).parent / "value.parquet"
    cmd = ["logs", "export", "--kind", "value", "--out", str(out_file)]
    done = CliRunner().invoke(app, [*cmd, "--database-url", database_url])
    assert done.exit_code == 0, done.output
    table = pq.read_table(out_file).to_pylist()
    plans = {r["decision_id"]: r["plan"] for r in table}
    assert plans[early] == "annual"
    assert sum(p is not None for p in plans.values()) == 1
    meta = json.loads(pq.read_schema(out_file).metadata[b"memberlab"])
    assert meta["early_hold"] == 600.0
