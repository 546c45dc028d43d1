"""A decision's catalogue list is referenced only once a full copy of it has committed.

Decisions without an explicit candidate list log the serving catalogue's list in full
now and then and ``{"ref": key}`` in between (``service/_experiment.py``). The database
here refuses, by a trigger, the decision rows whose context says ``"refuse"``: the
first decision of a real ``memberlab serve`` process fails to commit, and the decisions
after it must not refer to the list it carried (the export would have nothing to
resolve the reference with and fall back to the items table's approximation).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from _service_server import Keys, Server

from memberlab.store import Store

ITEMS = ["a", "b", "c"]

SQLITE_TRIGGER = """
CREATE TRIGGER refuse_decision BEFORE INSERT ON decisions
WHEN NEW.context LIKE '%"refuse"%'
BEGIN SELECT RAISE(ABORT, 'decision refused by the test'); END
"""
POSTGRES_TRIGGER = (
    """
CREATE FUNCTION refuse_decision() RETURNS trigger AS $$
BEGIN
  IF strpos(NEW.context::text, '"refuse"') > 0 THEN
    RAISE EXCEPTION 'decision refused by the test';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER refuse_decision BEFORE INSERT ON decisions
FOR EACH ROW EXECUTE FUNCTION refuse_decision()
""",
)


def _refuse_some_decisions(database_url: str) -> None:
    store = Store(database_url)
    try:
        with store.engine.begin() as conn:
            sqls = (SQLITE_TRIGGER,) if conn.dialect.name == "sqlite" else POSTGRES_TRIGGER
            for sql in sqls:
                conn.exec_driver_sql(sql)
    finally:
        store.close()


def test_no_reference_to_a_list_whose_decision_failed(
    serve: Callable[..., Server], keys: Keys, database_url: str, tmp_path: Path
) -> None:
    _refuse_some_decisions(database_url)
    s = serve("--train-interval", "0")
    admin, decide = s.client(keys.admin), s.client(keys.decide)
    for item in ITEMS:
        assert admin.put(f"/v1/callouts/items/{item}", json={"attributes": {}}).is_success
    r = decide.post("/v1/callouts/decisions", json={"context": {"page": "refuse"}})
    assert r.status_code >= 500, r.text  # the store refused the row: nothing was logged
    decide = s.client(keys.decide)  # the server closes a connection after a 500
    for _ in range(5):
        r = decide.post("/v1/callouts/decisions", json={"context": {"page": "home"}})
        assert r.status_code == 200, r.text
    store = Store(database_url)
    try:
        with store.engine.connect() as conn:
            logged = [json.loads(c) if isinstance(c, str) else c for (c,) in conn.exec_driver_sql(
                "SELECT candidates FROM decisions ORDER BY created_at"
            )]  # fmt: skip
    finally:
        store.close()
    assert len(logged) == 5
    assert logged[0].get("ids") == ITEMS, logged  # the first committed one is in full
    assert all(c == {"ref": logged[0]["key"]} for c in logged[1:]), logged
    out = tmp_path / "logs.parquet"
    cmd = [sys.executable, "-m", "memberlab.cli.main", "logs", "export", "--out", str(out),
           "--database-url", database_url]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    meta = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"memberlab"])
    assert meta["candidates_source"] == "logged", meta
    assert all(list(c) == ITEMS for c in pq.read_table(out)["candidates"].to_pylist())
