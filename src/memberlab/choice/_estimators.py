"""Choice estimators by name: one mapping for the library, the CLI and the service."""

from __future__ import annotations

from typing import Any

from memberlab.choice._parametric import CCP, NFXP
from memberlab.choice._pqr import PQR, StructuralPQR, TabularPQR

__all__ = ["ESTIMATORS", "make_estimator"]

#: Estimator classes by the name their results carry (``ChoiceResults.estimator``).
#: ``"pqr"`` is the default: tabular P and Q steps with a structural reward.
ESTIMATORS: dict[str, type] = {
    "pqr": StructuralPQR,
    "pqr-tabular": TabularPQR,
    "pqr-fa": PQR,
    "ccp": CCP,
    "nfxp": NFXP,
}


def make_estimator(name: str, /, **params: Any) -> Any:
    """Construct the estimator called ``name`` (a key of :data:`ESTIMATORS`).

    >>> type(make_estimator("pqr", anchor="none", discount=0.9)).__name__
    'StructuralPQR'
    """
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"estimator == {name!r}, must be one of {', '.join(ESTIMATORS)}."
        ) from None
    return cls(**params)
