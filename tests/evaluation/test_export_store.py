"""Export straight from a Store, on SQLite and PostgreSQL: rows, statuses, filters, paging.

Five callouts decisions (k = 2, so ten impressions) and one layout decision are logged;
the first three callouts decisions are closed with rewards through ``Store.publish``.
"""

from __future__ import annotations

import logging
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


def test_catalogue_lists_logged_by_reference(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Decisions without an explicit list log the serving catalogue's active items: in
    full once per ``FULL_LIST_EVERY`` decisions (5 here) of one catalogue state, by
    reference otherwise, and the export gives every decision the list it chose from,
    also after items are added and retired, also when its full copy lies outside the
    exported time range; a new snapshot object logs a full copy of its own. A
    reference whose full copies are gone falls back to the items table (and shows why
    that is only an approximation)."""
    import json

    import sqlalchemy as sa

    from memberlab.callouts import CalloutRecommender, Catalog
    from memberlab.service import _experiment
    from memberlab.store import _schema as s

    monkeypatch.setattr(_experiment, "FULL_LIST_EVERY", 5)
    monkeypatch.setattr(_experiment, "_catalog_list", None)
    store = Store(database_url)
    try:
        for item in "abcd":
            store.upsert_item(item, {"benefit": item})
        rec = CalloutRecommender(catalog=Catalog.from_records(
            [{"item_id": i, "benefit": i} for i in "abc"]))  # fmt: skip
        chose: dict[str, list[str]] = {}
        for k in range(24):
            if k == 8:  # a new item, then a retirement, as the trainer's sync does them
                rec.catalog.add("d", {"benefit": "d"})
            if k == 14:
                rec.catalog.retire("a")
            if k == 18:  # a new snapshot object of the same catalogue: a new full copy
                rec = CalloutRecommender.from_bytes(rec.to_bytes())
            logged = _experiment.decision_candidates(rec, None)
            did = f"d{k:02d}"
            chose[did] = rec.catalog.active_ids()
            d = DecisionRecord(did, "callouts", "", {}, [chose[did][0]], 1, k, 1000.0 + k,
                               True, candidates=logged)  # type: ignore[arg-type]  # fmt: skip
            store.log_decision(d, [(chose[did][0], 0.5)], window=60)
            _experiment.candidates_committed(logged)  # as the route does once committed
        with store._tx(write=False) as conn:
            stored = conn.execute(
                sa.select(s.decisions.c.decision_id, s.decisions.c.candidates)
            ).all()
        kinds = [
            "ids" if "ids" in (json.loads(c) if isinstance(c, str) else c) else "ref"
            for _, c in sorted(stored)
        ]
        # full copies: the first decision of each of the 4 catalogues, then every 5th
        assert [k for k, x in enumerate(kinds) if x == "ids"] == [0, 5, 8, 13, 14, 18, 23]
        rows = [r for b in iter_export(store, batch_size=4) for r in b]
        assert {r["decision_id"]: r["candidates"] for r in rows} == chose
        assert all(r["_logged_candidates"] for r in rows)
        # d11's full copy is d08: outside this range, looked up in the decisions table
        late = export_page(store, since=1011.0, until=1012.0)[0]
        assert late[0]["candidates"] == chose["d11"] == ["a", "b", "c", "d"]
        # references without a full copy (every copy of the list "bcd" deleted): the
        # items table's reconstruction, which never saw "a" retired in the catalogue
        gone = ["d14", "d18", "d23"]
        with store._tx() as conn:
            conn.execute(sa.delete(s.decisions).where(s.decisions.c.decision_id.in_(gone)))
        rows = {r["decision_id"]: r for b in iter_export(store) for r in b}
        assert not rows["d15"]["_logged_candidates"]
        assert rows["d15"]["candidates"] == ["a", "b", "c", "d"] != chose["d15"]
        assert rows["d13"]["candidates"] == chose["d13"] and rows["d13"]["_logged_candidates"]
        # the dangling references are reported, not fatal: a warning with the count,
        # and the count in the file's metadata (the references to d14's and d18's copies)
        dangling = [d for d, r in rows.items() if r["_dangling"]]
        assert dangling == ["d15", "d16", "d17", "d19", "d20", "d21", "d22"]
        out = tmp_path / "dangling.parquet"
        with caplog.at_level(logging.WARNING, logger="memberlab.store._export"):
            assert export_parquet(store, out) == 21
            page, _ = export_page(store)
        assert len(page) == 21 and "_dangling" not in page[0]
        warned = [r.getMessage() for r in caplog.records if "no full copy" in r.getMessage()]
        assert len(warned) == 2 and all(w.startswith("7 exported row(s)") for w in warned)
        meta = json.loads(pq.ParquetFile(out).schema_arrow.metadata[b"memberlab"])
        assert meta["dangling_references"] == 7
        assert meta["candidates_source"] == "logged, else catalog"
    finally:
        store.close()
