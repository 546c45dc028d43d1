"""Export through a real server, then evaluate uniform and a candidate on the export.

World (seed 11): 3 items, contexts page in {home, video}; click rates TRUTH[page][item].
400 shoppers are served by ``memberlab serve`` (k = 1, propensities logged), clicks sent
as events, windows closed on the data clock, one trainer step applied. The export must
hold one row per served item with the logged propensity, and IPS/SNIPS of uniform serving
on it must cover the simulator's true uniform value (mean over the logged pages of the
mean item rate); a candidate-settings search over two prior variances must run on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from _service_server import start_server

from memberlab.evaluation import BanditDataset, UniformPolicy, evaluate
from memberlab.store import Store
from memberlab.store._export import export_page

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ITEMS = {
    "good": {"benefit": "video", "colour": "blue"},
    "meh": {"benefit": "music", "colour": "red"},
    "bad": {"benefit": "photos", "colour": "grey"},
}
TRUTH = {
    "home": {"good": 0.30, "meh": 0.15, "bad": 0.05},
    "video": {"good": 0.50, "meh": 0.10, "bad": 0.05},
}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_serve_export_evaluate(sqlite_url: str, tmp_path: Path) -> None:
    store = Store(sqlite_url)
    admin = store.create_api_key("admin")
    store.close()
    server = start_server(
        sqlite_url, str(tmp_path / "server.log"), "--attribution-window", "60",
        "--train-interval", "0",
    )  # fmt: skip
    rng = np.random.default_rng(11)
    served: list[dict[str, Any]] = []
    try:
        with server.client(admin) as c:
            for item_id, attrs in ITEMS.items():
                assert c.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs}).is_success
            t = T0
            events = []
            for n in range(400):
                t += 1.0
                page = str(rng.choice(["home", "video"]))
                r = c.post(
                    "/v1/callouts/decisions",
                    json={"context": {"page": page}, "timestamp": iso(t)},
                )
                assert r.status_code == 200, r.text
                d = r.json()
                item = d["items"][0]["item_id"]
                served.append({"page": page, **d})
                if rng.random() < TRUTH[page][item]:
                    events.append(
                        {"event_id": f"e{n}", "decision_id": d["decision_id"], "item_id": item,
                         "type": "click", "timestamp": iso(t + 5)}
                    )  # fmt: skip
            for s in range(0, len(events), 100):
                assert c.post("/v1/events", json={"events": events[s : s + 100]}).status_code == 202
            t += 500.0  # close every window on the data clock
            c.post(
                "/v1/callouts/decisions", json={"context": {"page": "home"}, "timestamp": iso(t)}
            )
            assert c.post("/v1/admin/train").json()["ran"]
    finally:
        server.stop()

    out = tmp_path / "logs.parquet"
    proc = _cli("logs", "export", "--kind", "callouts", "--out", str(out),
                "--database-url", sqlite_url, "--batch-size", "97")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out).to_pandas()
    assert len(table) == 401  # one row per served item (k = 1), the clock-advancing one too
    assert (table["status"] == "closed").sum() == 400 and (table["status"] == "pending").sum() == 1
    by_id = table.set_index("decision_id")
    for d in served:
        row = by_id.loc[d["decision_id"]]
        assert row["item"] == d["items"][0]["item_id"] and row["position"] == 0
        assert row["propensity"] == pytest.approx(d["items"][0]["propensity"])
        assert row["ctx.page"] == d["page"] and row["policy_version"] == d["policy_version"]
        assert sorted(row["candidates"]) == sorted(ITEMS)
    assert table["unit_id"].isna().all()  # not sent by the service yet
    assert int(table["reward"].fillna(0).sum()) == len(events) > 0  # every click rewarded
    meta = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"memberlab"])
    assert {it["item_id"] for it in meta["items"]} == set(ITEMS)

    # the paging function the admin endpoint calls returns the same rows
    store = Store(sqlite_url)
    pages, cursor, seen = 0, None, []
    while True:
        rows, cursor = export_page(store, kind="callouts", cursor=cursor, limit=150)
        seen += [r["decision_id"] for r in rows]
        pages += 1
        if cursor is None:
            break
    store.close()
    assert pages == 3 and seen == list(table["decision_id"])

    data = BanditDataset.from_export(out)
    assert data.n_rounds == 400
    truth = float(np.mean([np.mean(list(TRUTH[p].values())) for p in data.records["ctx.page"]]))
    rep = evaluate(data, UniformPolicy(), estimators=["ipw", "snipw", "dr"])
    for e in rep.estimates:
        assert e.lower <= truth <= e.upper, (e, truth)

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"grid": {"prior_variance": [0.05, 1.0]}}))
    proc = _cli("evaluate", "logs", str(out), "--candidates", str(settings), "--draws", "100",
                "--importance", "--json", "--executor", "processes", "--workers", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert len(res["candidates"]) == 2 and res["best"]["name"] in {
        c["name"] for c in res["candidates"]
    }
    for cand in res["candidates"]:
        ipw = cand["estimates"][0]
        assert ipw["estimator"] == "IPS" and ipw["lower"] <= ipw["value"] <= ipw["upper"]
        assert cand["n"] == 200  # evaluated on the later half only
    (imp,) = res["importance"]  # one context feature group: the page
    assert imp["group"] == "ctx.page" and 0 <= imp["score"] <= 100
    assert all(isinstance(imp[k], float) for k in ("value_change", "loglik_change"))
    # the live policy's snapshot as the target: served after training, it prefers "good"
    store = Store(sqlite_url)
    snap = store.load_snapshot("callouts")
    store.close()
    assert snap is not None
    (tmp_path / "snap.bin").write_bytes(snap.data)
    proc = _cli("evaluate", "logs", str(out), "--policy", str(tmp_path / "snap.bin"),
                "--estimators", "ipw,snipw", "--draws", "200", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    snap_est = json.loads(proc.stdout)["estimates"][1]
    assert snap_est["estimator"] == "SNIPS" and snap_est["value"] > truth  # beats uniform
    proc = _cli("evaluate", "logs", str(out), "--policy", "uniform", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["estimates"][0]["value"] == pytest.approx(rep.estimates[0].value)
