"""The decision service: HTTP API, API keys, trainer loop, over :mod:`memberlab.store`.

Build the app with :func:`create_app`; run it with ``memberlab serve``.
"""

from memberlab.service.app import create_app
from memberlab.service.settings import Settings

__all__ = ["Settings", "create_app"]
