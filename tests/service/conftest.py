"""Fixtures for service tests: real servers over HTTP, keys created through the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _service_server import Keys, Server, start_server

from memberlab.store import Store


@pytest.fixture
def keys(database_url: str) -> Keys:
    store = Store(database_url)
    try:
        return Keys(store.create_api_key("admin"), store.create_api_key("decide"))
    finally:
        store.close()


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers on ``database_url``; every one is stopped at teardown."""
    servers: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        log = str(tmp_path / f"server-{len(servers)}.log")
        s = start_server(database_url, log, *args, env=env)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
