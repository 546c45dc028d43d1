"""LayoutSpace: validation, dict round trip, encode/decode, constraints (issue 4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlab import DataValidationError
from memberlab.layouts import LayoutSpace

SPEC: dict[str, Any] = {
    "slots": {"headline": ["h1", "h2"], "image": ["i1", "i2", "i3"], "body": ["b1", "b2"]},
    "interactions": [["headline", "image"]],
    "constraints": [{"headline": "h1", "image": "i3"}],
    "context": ["device"],
}


def test_from_dict_round_trip() -> None:
    space = LayoutSpace.from_dict(SPEC)
    assert space.n_layouts == 12
    assert space.pairs.tolist() == [[0, 1]]
    assert LayoutSpace.from_dict(space.to_dict()) == space
    assert LayoutSpace.from_dict({"slots": SPEC["slots"]}).n_pairs == 3  # default: all pairs


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({}, "missing the required key 'slots'"),
        ({"slots": {}, "extra": 1}, "unknown key 'extra'"),
        ({"slots": {}}, "slots == {}"),
        ({"slots": {"a": []}}, r"slots\['a'\] == \[\]"),
        ({"slots": {"a": "xy"}}, r"slots\['a'\] == 'xy'"),
        ({"slots": {"a": ["x", "x"]}}, "variant 'x' twice"),
        ({"slots": {"a": ["x", 3]}}, r"a variant of slots\['a'\] == 3"),
        ({"slots": {"a": ["x"], "b": ["y"]}, "interactions": [["a", "c"]]}, "unknown slot 'c'"),
        ({"slots": {"a": ["x"], "b": ["y"]}, "interactions": [["a", "a"]]}, "with itself"),
        (
            {"slots": {"a": ["x"], "b": ["y"]}, "interactions": [["a", "b"], ["b", "a"]]},
            "more than once",
        ),
        ({"slots": {"a": ["x"], "b": ["y"]}, "interactions": [["a"]]}, r"interactions\[0\]"),
        ({"slots": {"a": ["x", "z"]}, "constraints": [{"a": "q"}]}, "unknown variant 'q'"),
        ({"slots": {"a": ["x", "z"]}, "constraints": [{}]}, r"constraints\[0\] == \{\}"),
        ({"slots": {"a": ["x", "z"]}, "constraints": [{"a": "x"}, {"a": "z"}]}, "forbid every"),
        ({"slots": {"a": ["x"]}, "context": ["d", "d"]}, "field 'd' twice"),
        ({"slots": {"a": ["x"]}, "context": "device"}, "context == 'device'"),
    ],
)
def test_bad_space_definitions_give_clear_errors(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        LayoutSpace.from_dict(spec)


def test_bad_layouts_give_clear_errors() -> None:
    space = LayoutSpace.from_dict(SPEC)
    with pytest.raises(DataValidationError, match="missing slot 'body'"):
        space.to_indices({"headline": "h1", "image": "i1"})
    with pytest.raises(DataValidationError, match="unknown variant 'i9' for slot 'image'"):
        space.to_indices({"headline": "h1", "image": "i9", "body": "b1"})
    with pytest.raises(DataValidationError, match="unknown slot 'colour'"):
        space.to_indices({"headline": "h1", "image": "i1", "body": "b1", "colour": "red"})
    with pytest.raises(DataValidationError, match=r"code == 12, must be in \[0, 12\)"):
        space.decode(12)


spaces_st = st.lists(st.integers(1, 5), min_size=1, max_size=5).map(
    lambda sizes: LayoutSpace({f"s{d}": [f"v{v}" for v in range(n)] for d, n in enumerate(sizes)})
)


@settings(max_examples=60, deadline=None)
@given(space=spaces_st, data=st.data())
def test_encode_decode_is_a_bijection(space: LayoutSpace, data: st.DataObject) -> None:
    code = data.draw(st.integers(0, space.n_layouts - 1))
    layout = space.decode(code)
    assert space.encode(layout) == code
    idx = space.to_indices(layout)
    assert space.from_indices(idx) == layout
    assert int(space.codes(idx[None, :])[0]) == code
    # all codes distinct over the whole (small) space
    if space.n_layouts <= 2000:
        codes = space.codes(space.all_layouts())
        assert np.array_equal(codes, np.arange(space.n_layouts))


def test_violations_match_is_allowed() -> None:
    space = LayoutSpace.from_dict(SPEC)
    L = space.all_layouts()
    bad = space.violations(L)
    assert bad.sum() == 2  # h1 + i3 with either body
    for row, b in zip(L, bad, strict=True):
        assert space.is_allowed(space.from_indices(row)) == (not b)
