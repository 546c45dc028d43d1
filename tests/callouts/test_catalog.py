"""Catalog: attribute encoding, add/retire, persistence (issue 2)."""

from __future__ import annotations

import pandas as pd
import pytest

from memberlab import DataValidationError, UnknownItemError
from memberlab.callouts import AttributeSpec, Catalog


def _records() -> list[dict[str, object]]:
    return [
        {"item_id": "a", "benefit": "video", "price": 1.0, "title": "Free Video streaming"},
        {"item_id": "b", "benefit": "music", "price": 5.0, "title": "Music, ad-free"},
        {"item_id": "c", "benefit": "delivery", "price": 9.0, "title": None},
        {"item_id": "d", "benefit": "delivery", "price": 20.0, "tags": ["fast", "free"]},
    ]


def test_default_inference_by_type() -> None:
    cat = Catalog.from_records(_records())
    assert cat.spec["benefit"].kind == "categorical"
    assert cat.spec["price"].kind == "numeric"
    assert cat.spec["title"].kind == "tokens"
    assert cat.spec["tags"].kind == "categorical"
    groups = {g for g, _ in cat.features("a")}
    assert groups == {"benefit", "price", "title_tokens"}
    assert ("tags", "fast") in cat.features("d") and ("tags", "free") in cat.features("d")
    assert [g for g, _ in cat.features("c")].count("title_tokens") == 0  # missing title


def test_numeric_buckets_use_quartiles_and_labels() -> None:
    cat = Catalog.from_records(_records())
    prices = [v for i in "abcd" for g, v in cat.features(i) if g == "price"]
    assert len(set(prices)) >= 3
    spec = AttributeSpec("numeric", edges=(10.0, 20.0))
    assert spec.encode("p", 5) == ["[-inf,10)"]
    assert spec.encode("p", 10) == ["[10,20)"]
    assert spec.encode("p", 99.5) == ["[20,inf)"]


def test_token_hashing_is_stable_and_case_insensitive() -> None:
    spec = AttributeSpec("tokens", n_buckets=1024)
    assert spec.encode("title", "Free VIDEO") == spec.encode("title", "video, free!")
    assert len(spec.encode("title", "one two three")) <= 3


def test_from_frame_matches_records() -> None:
    frame = pd.DataFrame(_records())
    a = Catalog.from_frame(frame)
    b = Catalog.from_records(_records())
    for i in "abcd":
        assert a.features(i) == b.features(i)


def test_from_records_takes_a_dataframe() -> None:
    """Issue 10: ``from_records`` accepts a DataFrame (one row per item, ``item_id``).

    Before the fix it iterated the column names and failed with an AttributeError.
    """
    frame = pd.DataFrame(_records())  # NaN where an item lacks ``tags``
    a = Catalog.from_records(frame)
    b = Catalog.from_records(_records())
    assert a.active_ids() == b.active_ids() == list("abcd")
    for i in "abcd":
        assert a.features(i) == b.features(i)
    assert a.spec["price"] == b.spec["price"]
    renamed = Catalog.from_records(frame.rename(columns={"item_id": "sku"}), id_column="sku")
    assert renamed.active_ids() == list("abcd")
    with pytest.raises(DataValidationError, match=r"id_column == 'item_id' is not a column"):
        Catalog.from_records(frame.drop(columns="item_id"))
    with pytest.raises(DataValidationError, match=r"records == .*must be a sequence"):
        Catalog.from_records({"item_id": "a"})  # type: ignore[arg-type]
    with pytest.raises(DataValidationError, match=r"frame == .*must be a pandas DataFrame"):
        Catalog.from_frame(_records())  # type: ignore[arg-type]


def test_add_update_retire() -> None:
    cat = Catalog.from_records(_records())
    v0 = cat.version
    cat.add("e", {"benefit": "photos", "price": 3.0})
    assert "e" in cat and cat.active_ids()[-1] == "e"
    cat.retire("a")
    assert "a" not in cat.active_ids() and "a" in cat
    cat.add("a", {"benefit": "reading"})  # update re-activates
    assert cat.is_active("a") and cat.attributes("a") == {"benefit": "reading"}
    assert cat.version > v0
    with pytest.raises(UnknownItemError, match="'zz'"):
        cat.retire("zz")
    with pytest.raises(UnknownItemError):
        cat.attributes("zz")


def test_bad_input_messages_name_the_value() -> None:
    cat = Catalog()
    with pytest.raises(DataValidationError, match="item_id"):
        cat.add("", {})
    with pytest.raises(DataValidationError, match="'when'"):
        cat.add("x", {"when": object()})
    with pytest.raises(DataValidationError, match="edges"):
        AttributeSpec("numeric", edges=(3.0, 1.0))
    with pytest.raises(DataValidationError, match="kind"):
        AttributeSpec("colour")  # type: ignore[arg-type]
    cat = Catalog(spec={"price": AttributeSpec("numeric")})
    with pytest.raises(DataValidationError, match="numeric"):
        cat.add("x", {"price": "cheap"})
    with pytest.raises(DataValidationError, match="id_column"):
        Catalog.from_frame(pd.DataFrame({"x": [1]}))


def test_json_round_trip() -> None:
    cat = Catalog.from_records(_records())
    cat.retire("b")
    back = Catalog.from_json(cat.to_json())
    assert back.to_json() == cat.to_json()
    assert back.active_ids() == cat.active_ids()
