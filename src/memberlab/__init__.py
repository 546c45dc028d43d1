"""memberlab: the science of membership programmes, in the open.

Parts (lower layers never import higher ones):

- :mod:`memberlab.bayes` posterior records and pure update/sample functions;
- :mod:`memberlab.callouts` the benefit-callout recommender;
- :mod:`memberlab.layouts` multivariate layout optimisation;
- :mod:`memberlab.choice` dynamic discrete choice (PQR, NFXP, CCP);
- :mod:`memberlab.evaluation` off-policy estimates and regret harnesses;
- :mod:`memberlab.store` and :mod:`memberlab.service` the decision service.
"""

from memberlab._errors import (
    AnchorSupportError,
    ConvergenceWarning,
    DataValidationError,
    MemberlabError,
    NotFittedError,
    SchemaVersionError,
    UnknownItemError,
)

__version__ = "0.1.0"

__all__ = [
    "AnchorSupportError",
    "ConvergenceWarning",
    "DataValidationError",
    "MemberlabError",
    "NotFittedError",
    "SchemaVersionError",
    "UnknownItemError",
    "__version__",
]
