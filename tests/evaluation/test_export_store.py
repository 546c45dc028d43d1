"""Export straight from a Store, on SQLite and PostgreSQL: rows, statuses, filters, paging.

Five callouts decisions (k = 2, so ten impressions) and one layout decision are logged;
the first three callouts decisions are closed with rewards through ``Store.publish``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from memberlab import DataValidationError
from memberlab.evaluation import BanditDataset
from memberlab.store import DecisionRecord, Store
from memberlab.store._export import export_page, export_parquet, iter_export


def _fill(store: Store) -> None:
    store.upsert_item("a", {"benefit": "video"})
    store.upsert_item("b", {"benefit": "music"})
    store.upsert_item("c", {"benefit": "photos"})
    for k in range(5):
        d = DecisionRecord(f"d{k}", "callouts", "", {"page": ["home", "video"][k % 2],
                           "tags": ["x", "y"][: k % 3], "age": 20 + k},
                           ["a", "b"] if k % 2 else ["c", "a"], 1, 100 + k, 1000.0 + k)  # fmt: skip
        store.log_decision(d, [(d.served[0], 0.5), (d.served[1], 0.25)], window=60)
    lay = DecisionRecord("L0", "layouts", "home", {"page": "home"}, {"hero": "big"}, 1, 7, 1002.5)
    store.log_decision(lay, [("", 0.125)], window=60)
    closed = [(f"d{k}", item, float(k == 1)) for k in range(3)
              for item in (["a", "b"] if k % 2 else ["c", "a"])]  # fmt: skip
    store.publish("callouts", b"x", base_version=0, closed=closed)


def test_export_rows_and_parquet(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    try:
        _fill(store)
        rows = [r for b in iter_export(store, kind="callouts", batch_size=3) for r in b]
        assert len(rows) == 10
        by = {(r["decision_id"], r["item"]): r for r in rows}
        assert by[("d1", "a")]["position"] == 0 and by[("d1", "b")]["position"] == 1
        assert by[("d1", "b")]["propensity"] == 0.25 and by[("d1", "b")]["reward"] == 1.0
        assert by[("d3", "a")]["status"] == "pending" and by[("d3", "a")]["reward"] is None
        assert by[("d0", "c")]["status"] == "closed" and by[("d0", "c")]["reward"] == 0.0
        assert sorted(by[("d0", "c")]["candidates"]) == ["a", "b", "c"]
        assert [r["decision_id"] for r in export_page(store, since=1001, until=1003)[0]] == [
            "d1", "d1", "d2", "d2"
        ]  # fmt: skip
        page, cur = export_page(store, limit=4)
        page2, cur2 = export_page(store, limit=4, cursor=cur)
        page3, cur3 = export_page(store, limit=4, cursor=cur2)
        assert len(page) == 4 and len(page2) == 4 and len(page3) == 2 and cur3 is None
        assert page[0]["context"]["page"] == "home"  # a dict, JSON-ready
        (lay,) = export_page(store, kind="layouts", space="home")[0]
        assert lay["item"] == '{"hero":"big"}' and lay["propensity"] == 0.125
        with pytest.raises(DataValidationError, match="kind == 'nope'"):
            export_page(store, kind="nope")
        with pytest.raises(DataValidationError, match="cursor"):
            export_page(store, cursor="garbage")
        out = tmp_path / "x.parquet"
        assert export_parquet(store, out, kind="callouts", batch_size=4) == 10
    finally:
        store.close()
    t = pq.read_table(out)
    assert t.schema.field("ctx.age").type == "double"
    assert str(t.schema.field("ctx.tags").type).startswith("list<")
    assert t.num_rows == 10
    data = BanditDataset.from_export(out)
    assert data.n_rounds == 6 and data.len_list == 2  # closed rows only
    assert list(data.records["ts"]) == sorted(data.records["ts"])
    assert set(data.feature_groups) == {"ctx.age", "ctx.page", "ctx.tags"}
