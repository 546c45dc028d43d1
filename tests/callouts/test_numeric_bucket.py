"""Numeric context values near the float limit get a bucket, not an OverflowError (the
service answered 500 to ``{"context": {"0": 1.5e308}}``; found by tests/service/test_fuzz.py)."""

from __future__ import annotations

import sys

import pytest

from memberlab.callouts.features import numeric_bucket


@pytest.mark.parametrize("x", [sys.float_info.max, -sys.float_info.max, 1.5116737128318743e308])
def test_largest_floats_have_a_bucket(x: float) -> None:
    label = numeric_bucket(x)
    assert label.endswith(",inf)") and label.startswith("-" if x < 0 else "[")


def test_ordinary_buckets_unchanged() -> None:
    assert numeric_bucket(0) == "0"
    assert numeric_bucket(1.0) == "[1,1.189)"
    assert numeric_bucket(-3.0) == "-[2.828,3.364)"
    assert numeric_bucket(5e-324).startswith("[")
