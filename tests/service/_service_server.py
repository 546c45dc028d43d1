"""Real ``memberlab serve`` processes for HTTP tests: the library's one launcher."""

from __future__ import annotations

from dataclasses import dataclass

from memberlab.service.launch import Server, free_port
from memberlab.service.launch import start_server as _start

__all__ = ["Keys", "Server", "free_port", "start_server"]


@dataclass(frozen=True)
class Keys:
    admin: str
    decide: str


def start_server(
    database_url: str | None,
    log_path: str,
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Server:
    """:func:`memberlab.service.launch.start_server` with the log path first."""
    return _start(database_url, *args, log_path=log_path, timeout=timeout, env=env, cwd=cwd)
