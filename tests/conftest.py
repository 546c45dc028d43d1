"""Shared fixtures.

PostgreSQL tests use ``MEMBERLAB_TEST_POSTGRES_URL``. Without it, or when the server is
unreachable, they skip with the reason; with ``MEMBERLAB_REQUIRE_POSTGRES=1`` (CI) they
fail instead. Each test gets a fresh schema ``t_<random>`` (``search_path`` set through
the URL), dropped at teardown, so parallel runs never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("MEMBERLAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (MEMBERLAB_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _plain_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The PostgreSQL server URL, checked reachable once per session."""
    url = os.environ.get("MEMBERLAB_TEST_POSTGRES_URL", "")
    if not url:
        _postgres_unavailable("MEMBERLAB_TEST_POSTGRES_URL is not set.")
    try:
        import psycopg
    except ImportError:
        _postgres_unavailable("psycopg is not installed (pip install 'memberlab[postgres]').")
    try:
        with psycopg.connect(_plain_url(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any connection problem means "unreachable"
        _postgres_unavailable(f"cannot connect to {url}: {exc}")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a fresh schema, dropped after the test."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    base = _plain_url(postgres_server_url)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/memberlab.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))
