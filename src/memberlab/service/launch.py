"""Start ``memberlab serve`` as a real subprocess and wait until it is healthy.

The one helper for tests, benchmarks and the demo: :func:`start_server` returns a
:class:`Server` (its own process group, so stopping it reaches every worker and the
trainer process); :func:`running_server` is the same as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "UVICORN_SETTINGS",
    "Server",
    "free_port",
    "run_uvicorn",
    "running_server",
    "start_command",
    "start_server",
    "uvicorn_command",
]

#: uvicorn settings of ``memberlab serve`` (and of the load benchmark's baseline app)
UVICORN_SETTINGS: dict[str, Any] = {
    "factory": True,
    "access_log": False,
    "timeout_graceful_shutdown": 5,
}


def run_uvicorn(app: str, *, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the app factory ``app`` (``"module:function"``) as ``memberlab serve`` does.

    With several workers on Linux each worker listens on a socket of its own
    (``SO_REUSEPORT``), so the kernel spreads connections over the workers by a hash of
    their addresses. On uvicorn's one shared socket, whichever worker woke first took
    the connections that were waiting: 64 keep-alive connections opened at once split
    64/0, 52/12 and 41/23 between two workers (five tries gave no split closer than
    36/28), and the worker holding most of them served most of the load while the other
    idled. uvicorn's supervisor still starts, watches and restarts the workers.
    """
    import uvicorn

    if workers > 1 and port != 0 and _reuse_port():
        from uvicorn.supervisors import Multiprocess

        with _listen_socket(host, port, reuse_port=False):
            pass  # the port is free: nobody else's socket joins the workers' group
        config = uvicorn.Config(
            app, host=host, port=port, workers=workers, log_level=log_level, **UVICORN_SETTINGS
        )
        # each worker unpickles this into a socket of its own (see _PortShare)
        Multiprocess(config, sockets=[_PortShare(host, port)]).run()  # type: ignore[list-item]
        return
    uvicorn.run(app, host=host, port=port, workers=workers, log_level=log_level, **UVICORN_SETTINGS)


def _listening(port: int) -> int:
    """How many sockets listen on TCP ``port`` (Linux's /proc/net; each SO_REUSEPORT
    worker's socket is one)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                n += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port  # 0A: LISTEN
    return n


def _reuse_port() -> bool:
    # Linux balances the connections of SO_REUSEPORT sockets; other systems may not
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _listen_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening), as uvicorn binds one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _PortShare:
    """Stands for a worker's listening socket in the list uvicorn's supervisor hands to
    each worker process: unpickled in the worker (multiprocessing's spawn), it becomes a
    new ``SO_REUSEPORT`` socket bound to the same address."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return _listen_socket, (self.host, self.port)


def uvicorn_command(app: str, *, host: str, port: int, workers: int) -> list[str]:
    """The command line of a process that serves ``app`` through :func:`run_uvicorn`."""
    code = (
        "from memberlab.service.launch import run_uvicorn; "
        f"run_uvicorn({app!r}, host={host!r}, port={port}, workers={workers}, "
        "log_level='warning')"
    )
    return [sys.executable, "-c", code]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` at the time of the call."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``memberlab serve``: its process, base URL and log file."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: str

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def client(self, key: str | None = None, *, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client on the server, with ``Authorization: Bearer key`` if given."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def log(self) -> str:
        """What the server printed so far."""
        return Path(self.log_path).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL every process of the server at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group; SIGKILL what is left after ``timeout`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    database_url: str | None,
    *args: str,
    log_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> Server:
    """Start ``memberlab serve`` (``args`` appended) and wait until ``/healthz`` is 200.

    Parameters
    ----------
    database_url : str or None
        ``--database-url``; ``None`` leaves the default (the user data directory).
    log_path : str or Path, optional
        Where the server's output goes (default: a file in the temporary directory).
    env : mapping, optional
        Extra environment variables of the server process.

    Raises
    ------
    RuntimeError
        The server exited, or was not healthy after ``timeout`` seconds (the end of its
        log is in the message).
    """
    port = free_port(host) if port is None else port
    workers = int(args[list(args).index("--workers") + 1]) if "--workers" in args else 1
    cmd = [
        sys.executable,
        "-m",
        "memberlab.cli.main",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        *(["--database-url", database_url] if database_url else []),
        *args,
    ]
    return start_command(
        cmd,
        host=host,
        port=port,
        log_path=log_path,
        timeout=timeout,
        env=env,
        cwd=cwd,
        workers=workers,
    )


def start_command(
    cmd: Sequence[str],
    *,
    host: str,
    port: int,
    log_path: str | Path | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    health: str = "/healthz",
    workers: int = 1,
) -> Server:
    """Start any HTTP server command listening on ``host:port`` in a process group of its
    own, and wait until ``health`` answers 200 (see :func:`start_server`) and, where the
    workers listen on sockets of their own (:func:`run_uvicorn` on Linux), until all
    ``workers`` listen: connections made before then all go to the workers already up."""
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="memberlab-serve-", suffix=".log")
        os.close(fd)
        log_path = name
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    server = Server(proc, f"http://{host}:{port}", str(log_path))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[2:4]} exited with {proc.returncode}:\n{server.log()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}{health}", timeout=2.0).status_code == 200 and (
                workers == 1 or not _reuse_port() or _listening(port) >= workers
            ):
                return server
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(
                f"server on port {port} not healthy after {timeout} s:\n{server.log()[-3000:]}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running_server(database_url: str | None, *args: str, **kwargs: object) -> Iterator[Server]:
    """:func:`start_server` as a context manager; the server is stopped on exit."""
    server = start_server(database_url, *args, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
