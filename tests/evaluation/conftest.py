"""Fixtures of the evaluation tests: the Open Bandit Dataset samples from the obp wheel.

The wheel (``obp==0.4.1``, 1.3 MB) is fetched once with ``pip download`` into
``MEMBERLAB_OBD_CACHE`` (default ``~/.cache/memberlab/obp``). Without a registry the OBD
tests skip with the reason; with ``MEMBERLAB_REQUIRE_OBD=1`` or ``CI`` set they fail
instead (as ``MEMBERLAB_REQUIRE_POSTGRES`` does for PostgreSQL).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memberlab.evaluation import fetch_obd_wheel


@pytest.fixture(scope="session")
def obd_wheel() -> Path:
    cache = os.environ.get("MEMBERLAB_OBD_CACHE") or str(Path.home() / ".cache/memberlab/obp")
    try:
        return fetch_obd_wheel(cache)
    except (FileNotFoundError, OSError) as exc:
        if os.environ.get("MEMBERLAB_REQUIRE_OBD") == "1" or os.environ.get("CI"):
            pytest.fail(f"the OBD sample is required (MEMBERLAB_REQUIRE_OBD=1 or CI) but {exc}")
        pytest.skip(f"OBD tests skipped, the obp wheel is unavailable: {exc}")
