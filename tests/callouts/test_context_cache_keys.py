"""The context encoding's caches never hand one context another's features.

``1 == 1.0 == True`` in Python and they hash alike, but their features differ
(``"1"``, ``"1.0"`` and ``"True"`` in a list; a numeric bucket or ``"True"`` as a
value; ``ctx.1`` or ``ctx.True`` as a key). Each pair below is encoded in both orders
by one CalloutFeatures (the second from a warm cache) and compared with the encoding of
a fresh one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from memberlab.callouts import CalloutRecommender, Catalog, Feedback
from memberlab.callouts.features import CalloutFeatures

# contexts that compare (or whose parts compare) equal but encode differently
LOOKALIKES: list[tuple[dict[Any, Any], dict[Any, Any]]] = [
    ({"x": [1]}, {"x": [True]}),
    ({"x": [1]}, {"x": [1.0]}),
    ({"x": [1.0, "a"]}, {"x": [True, "a"]}),
    ({"x": (1,)}, {"x": (True,)}),
    ({"x": frozenset({1})}, {"x": frozenset({True})}),
    ({"x": [(1,)]}, {"x": [(True,)]}),
    ({"x": 1}, {"x": True}),
    ({1: "a"}, {True: "a"}),
    ({1: "a"}, {1.0: "a"}),
    ({1: "a", "b": "c"}, {True: "a", "b": "c"}),
    ({"x": Decimal("1.0")}, {"x": Decimal("1.00")}),  # equal, hash alike, spelled apart
]


def _catalog() -> Catalog:
    return Catalog.from_records(
        [{"item_id": f"i{j}", "benefit": ["video", "music"][j % 2]} for j in range(4)]
    )


@pytest.mark.parametrize(("first", "second"), LOOKALIKES)
def test_lookalike_contexts_get_their_own_encoding(
    first: dict[Any, Any], second: dict[Any, Any]
) -> None:
    for a, b in ((first, second), (second, first)):
        feats = CalloutFeatures(_catalog(), None)
        feats.encode(a)
        assert feats.encode(b) == CalloutFeatures(_catalog(), None).encode(b)
        assert feats.encode(a) == CalloutFeatures(_catalog(), None).encode(a)
    assert CalloutFeatures(_catalog(), None).encode(first) != CalloutFeatures(
        _catalog(), None
    ).encode(second)


def test_a_decision_for_a_lookalike_uses_its_own_features() -> None:
    """Trained on clicks for ``[1]`` (so its encoding is cached), a decision for
    ``[True]`` scores the features of ``True``: those of ``["True"]``, not of ``[1]``
    (it used to get ``[1]``'s cached features)."""
    rec = CalloutRecommender(catalog=_catalog(), rng=0)
    rec.update([Feedback({"x": [1]}, "i1", 1.0) for _ in range(30)])
    seeds = [int(s) for s in np.random.default_rng(0).integers(0, 2**63, size=20)]
    got = [rec.decide({"x": [True]}, seed=s) for s in seeds]
    assert got == [rec.decide({"x": ["True"]}, seed=s) for s in seeds]
    assert got != [rec.decide({"x": [1]}, seed=s) for s in seeds]
