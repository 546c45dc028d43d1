"""Value snapshots keep the member value tables in the codec's ``.npz`` arrays, not in the
JSON header; snapshots written with the tables in the header still load and decide the
same."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from memberlab import DataValidationError
from memberlab.callouts import Catalog
from memberlab.choice import MembershipEnv
from memberlab.policy import MAGIC, PARAM_ARRAY_PREFIX, read_snapshot, write_snapshot
from memberlab.value import ENV_PRICES, ValueRecommender, member_values, true_results

DATA = Path(__file__).parent / "data"


def _header(data: bytes) -> tuple[dict[str, object], int]:
    cut = data.find(b"\n", len(MAGIC))
    return json.loads(data[len(MAGIC) : cut]), cut - len(MAGIC)


def test_member_value_tables_are_arrays_not_header() -> None:
    """The membership environment's 252 states x 3 actions, with intervals: the header
    holds no table (it was 42 KB of the 45 KB snapshot when they were JSON, 13 KB now),
    and the tables come back bit for bit, NaN (infeasible) included."""
    mv = member_values(true_results(MembershipEnv()), prices=ENV_PRICES, horizon=24)
    mv = dataclasses.replace(mv, lower=mv.values - 1.0, upper=mv.values + 1.0)
    cat = Catalog.from_records([{"item_id": "a", "pitch": "annual"}, {"item_id": "d"}])
    rec = ValueRecommender(catalog=cat, values=mv, crosses=[("delivery", "pitch")])
    data = rec.to_bytes()
    header, size = _header(data)
    assert size < 20_000, size
    stored = header["params"]["values"]["value"]  # type: ignore[index]
    for name in ("values", "revenue", "lower", "upper"):
        assert stored[name] == {"__type__": "array", "key": f"param.values.{name}"}
    back = ValueRecommender.from_bytes(data)
    for name in ("values", "revenue", "lower", "upper"):
        a, b = getattr(mv, name), getattr(back.values, name)
        np.testing.assert_array_equal(a, b)  # NaN where NaN
    assert back.values.to_dict() == mv.to_dict()
    # the parameter arrays are not handed to the kind as learned state
    _, _, arrays = read_snapshot(data, kind="value")
    assert not [k for k in arrays if k.startswith(PARAM_ARRAY_PREFIX)]


def test_snapshot_with_tables_in_the_header_still_loads() -> None:
    """``value_header_tables.bin`` was written by 55360d8 (member values as JSON lists in
    the header); it loads, decides as that release did (seed 7, k=2: ``annual`` then
    ``deal``, scores 3.5422776153744393 and 0.8677022816628602, version 1, printed by
    that release) and re-saves with the tables in the arrays."""
    old = (DATA / "value_header_tables.bin").read_bytes()
    header, _ = _header(old)
    assert isinstance(header["params"]["values"]["value"]["values"], list)  # type: ignore[index]
    rec = ValueRecommender.from_bytes(old)
    assert rec.policy_version == 1
    d = rec.decide({"status": "none", "delivery": 2}, seed=7, k=2)
    assert d.item_ids == ["annual", "deal"]
    assert [s.score for s in d.items] == [3.5422776153744393, 0.8677022816628602]
    assert np.isnan(rec.values.values[2, 1])
    again = ValueRecommender.from_bytes(rec.to_bytes())
    assert again.decide({"status": "none", "delivery": 2}, seed=7, k=2) == d
    assert _header(rec.to_bytes())[1] < _header(old)[1]


def test_a_missing_or_reserved_parameter_array_is_refused() -> None:
    data = (DATA / "value_header_tables.bin").read_bytes()
    rec = ValueRecommender.from_bytes(data)
    new = rec.to_bytes()
    params, state, _ = read_snapshot(new, kind="value")
    assert params["values"].to_dict() == rec.values.to_dict()
    # the header names an array the archive lacks
    cut = new.find(b"\n", len(MAGIC))
    broken = new[:cut].replace(b'"param.values.values"', b'"param.values.gone"') + new[cut:]
    with pytest.raises(DataValidationError, match=r"param\.values\.gone"):
        ValueRecommender.from_bytes(broken)
    with pytest.raises(DataValidationError, match="reserved"):
        write_snapshot("value", {}, state, {"param.x": np.zeros(2)})
