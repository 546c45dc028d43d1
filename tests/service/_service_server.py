"""Start ``memberlab serve`` as a real subprocess on a free port, for HTTP tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from memberlab.service.demo import free_port


@dataclass(frozen=True)
class Keys:
    admin: str
    decide: str


@dataclass
class Server:
    """A running server process (its own process group, so SIGKILL reaches workers)."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: str

    def client(self, key: str | None = None, *, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL every process of the server at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    database_url: str | None,
    log_path: str,
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Server:
    """Start ``memberlab serve`` and wait until ``/healthz`` answers 200."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "memberlab.cli.main",
        "serve",
        "--port",
        str(port),
        *(["--database-url", database_url] if database_url else []),
        *args,
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            with open(log_path) as f:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{f.read()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/healthz", timeout=2.0).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"server on port {port} not healthy after {timeout} s")
        time.sleep(0.1)
