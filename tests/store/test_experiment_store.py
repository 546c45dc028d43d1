"""The store's experiment side, on SQLite and PostgreSQL: decisions keep their unit, arm
and candidate list; the export uses the logged candidates; the readout query sums each
decision's rewards; the salt is set once; evaluations are recorded and listed."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from memberlab import DataValidationError
from memberlab.store import DecisionRecord, Store
from memberlab.store._export import export_page, export_parquet


def _decision(k: int, **kw: object) -> DecisionRecord:
    return DecisionRecord(
        f"d{k}", "callouts", "", {"page": "home"}, ["a", "b"], 1, k, 1000.0 + k, True, **kw
    )  # type: ignore[arg-type]


def test_decisions_keep_unit_arm_and_candidates(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    try:
        for item in "abc":
            store.upsert_item(item, {"benefit": item})
        # d0 chose from an explicit list that leaves "c" out; d1 has no logged list
        store.log_decision(
            _decision(0, unit_id="u1", assignment="holdout", candidates=["a", "b"]),
            [("a", 0.5), ("b", 0.5)],
            window=60,
        )
        store.log_decision(_decision(1), [("a", 0.4), ("b", 0.3)], window=60)
        store.log_decision(
            _decision(2, unit_id=None, assignment="policy", candidates=["b", "a", "c"]),
            [("a", 0.2), ("b", 0.1)],
            window=60,
        )
        store.publish(
            "callouts", b"x", base_version=0,
            closed=[("d0", "a", 1.0), ("d0", "b", 1.0), ("d1", "a", 0.0), ("d1", "b", 1.0),
                    ("d2", "a", 1.0)],
        )  # fmt: skip
        rows = {(r["decision_id"], r["item"]): r for r in export_page(store)[0]}
        assert rows[("d0", "a")]["candidates"] == ["a", "b"]  # logged, not the catalogue
        assert rows[("d0", "a")]["unit_id"] == "u1"
        assert rows[("d0", "a")]["assignment"] == "holdout"
        assert sorted(rows[("d1", "a")]["candidates"]) == ["a", "b", "c"]  # reconstructed
        assert rows[("d1", "a")]["assignment"] is None
        assert rows[("d2", "b")]["candidates"] == ["b", "a", "c"]
        out = tmp_path / "x.parquet"
        export_parquet(store, out)
        meta = pq.ParquetFile(out).schema_arrow.metadata[b"memberlab"]
        assert b'"candidates_source": "logged, else catalog"' in meta
        assert pq.read_table(out).to_pandas().set_index(["decision_id", "item"]).loc[
            ("d0", "a"), "candidates"
        ].tolist() == ["a", "b"]

        exp = store.experiment_decisions("callouts")
        assert exp.decision_id == ["d0", "d2"]  # d1 has no arm
        assert exp.unit_id == ["u1", None] and exp.assignment == ["holdout", "policy"]
        assert exp.reward == [2.0, 1.0]  # summed over the served items
        assert exp.closed == [True, False]  # d2's "b" is still pending
        assert store.experiment_decisions("callouts", since=1001.5).decision_id == ["d2"]
        assert store.experiment_decisions("callouts", until=1001.5).decision_id == ["d0"]
        with pytest.raises(DataValidationError, match="before since"):
            store.experiment_decisions("callouts", since=2, until=1)
    finally:
        store.close()


def test_salt_set_once_and_evaluations(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.setdefault_meta("experiment_salt", "first") == "first"
        assert store.setdefault_meta("experiment_salt", "second") == "first"
        assert store.list_evaluations() == []
        a = store.record_evaluation("ope", "logs.parquet: uniform", {"estimates": [], "n": 3})
        b = store.record_evaluation("candidates", "grid", {"best": {"name": "x"}})
        assert b > a
        latest = store.list_evaluations(limit=5)
        assert [e.seq for e in latest] == [b, a]
        assert latest[1].result == {"estimates": [], "n": 3}
        assert [e.label for e in store.list_evaluations(kind="ope")] == ["logs.parquet: uniform"]
        with pytest.raises(ValueError):
            store.record_evaluation("ope", "bad", {"value": float("nan")})
    finally:
        store.close()
