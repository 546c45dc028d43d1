"""Defaults shared by :func:`memberlab.choice.counterfactual`, ``memberlab choice
counterfactual`` and the service's ``GET /v1/choice/counterfactual`` (a module with no
imports, so the service can read them without loading the estimators)."""

DEFAULT_MONTHS = 12
DEFAULT_MEMBERS = 10_000
DEFAULT_ALPHA = 0.05
