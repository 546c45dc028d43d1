"""``memberlab keys create`` and ``memberlab serve`` share the default SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _service_server import start_server


def _keys(
    scope: str, cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", "keys", "create", "--scope", scope, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("data_dir", [None, "elsewhere"])
def test_keys_and_serve_use_the_same_default_database(tmp_path: Path, data_dir: str | None) -> None:
    """The default SQLite file is one place per user, whatever the working directory:
    $MEMBERLAB_DATA_DIR if set, else $XDG_DATA_HOME/memberlab. Keys made in one
    directory work for a server started in another (they used to get 401), and the
    server says at start-up which database it uses."""
    xdg = tmp_path / "xdg"
    env = {
        "MEMBERLAB_DATA_DIR": str(tmp_path / data_dir) if data_dir else "",
        "XDG_DATA_HOME": str(xdg),
    }
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    done = _keys("admin", here, env)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("mlk_admin_") and "\n" not in key
    expected = (tmp_path / data_dir if data_dir else xdg / "memberlab") / "memberlab.db"
    assert expected.exists()
    assert not (here / "data").exists()
    log = tmp_path / "serve.log"
    server = start_server(None, str(log), "--train-interval", "0", env=env, cwd=str(there))
    try:
        r = httpx.get(
            f"{server.base_url}/v1/admin/stats", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200, r.text
    finally:
        server.stop()
    assert f"database sqlite:///{expected}" in log.read_text()
    bad = _keys("root", here, env)
    assert bad.returncode == 2 and "scope" in bad.stderr


@pytest.mark.parametrize("world", ["catalog", "simulator"])
def test_demo_runs_end_to_end(tmp_path: Path, world: str) -> None:
    """``memberlab demo`` starts its own server, learns, says what it shows, compares the
    truth with the posterior for the same shopper context, and writes a PNG."""
    cmd = ["demo", "--rounds", "3", "--shoppers", "60", "--world", world]
    done = subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", *cmd, "--plot", str(tmp_path / "d.png")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    assert "summary" in out and "180 decisions" in out
    assert ("free-delivery" if world == "catalog" else "item00000") in out
    assert "true probability that depends on their context" in out
    assert "for one shopper: member=" in out
    assert "coverage: 95% intervals contain the true click rate for" in out
    png = tmp_path / "d.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_demo_keep_serving_leaves_the_dashboard_up(tmp_path: Path) -> None:
    import signal

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memberlab.cli.main",
            "demo",
            "--rounds",
            "1",
            "--shoppers",
            "20",
            "--keep-serving",
            "--plot",
            str(tmp_path / "d.png"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"},
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("mlk_admin_"):
                break
        text = "".join(seen)
        assert "the service stays up" in text, text[-2000:]
        url = next(w for w in text.split() if w.endswith("/dashboard"))
        key = seen[-1].strip()
        assert httpx.get(url).status_code == 200
        stats = httpx.get(
            url.replace("/dashboard", "/v1/admin/stats"), headers={"Authorization": f"Bearer {key}"}
        )
        assert stats.status_code == 200 and stats.json()["decisions"] == 20
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:  # say where it was stuck (faulthandler's dump)
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            rest = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the demo did not stop on Ctrl-C; its output:\n{rest}") from None


def test_serve_refuses_an_address_in_use_before_starting_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "memberlab.cli.main", "serve", "--port", str(port)],
            cwd=tmp_path,
            env={**os.environ, "MEMBERLAB_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in " ".join(done.stderr.split())
