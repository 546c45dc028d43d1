"""Operations as a user meets them: CLI errors, drivers, key listing and revocation.

Every test here runs the real ``memberlab`` command or a real ``memberlab serve``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _service_server import Keys, Server


def memberlab(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memberlab.cli.main", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit code 2 and exactly one line on stderr, no traceback."""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "pydantic" not in done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (
            ["--crosses", "page-benefit"],
            ["--crosses", "page-benefit", "context_key:item_attribute"],
        ),
        (["--attribution-window", "-5"], ["--attribution-window", "-5", "greater than 0"]),
        (["--propensity-draws", "0"], ["--propensity-draws", "0"]),
        (["--exploration", "-1"], ["--exploration", "-1"]),
        (["--exploration", "nan"], ["--exploration", "nan"]),
        (["--train-interval", "-1"], ["--train-interval", "-1"]),
        (["--port", "0"], ["--port"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_serve_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, args: list[str], names: list[str]
) -> None:
    done = memberlab(
        "serve", "--database-url", str(tmp_path / "m.db"), *args, env={"COLUMNS": "300"}
    )
    line = one_line_error(done)
    for name in names:
        assert name in line, line


def test_keys_errors_are_one_line(tmp_path: Path) -> None:
    line = one_line_error(
        memberlab("keys", "create", "--scope", "root", "--database-url", str(tmp_path / "m.db"))
    )
    assert "scope == 'root'" in line and "decide" in line


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_one_line(postgres_server_url: str) -> None:
    base = postgres_server_url.rsplit("/", 1)[0]
    done = memberlab("keys", "create", "--scope", "admin", "--database-url", f"{base}/no_such_db_x")
    line = one_line_error(done)
    assert "no_such_db_x" in line and "does not exist" in line, line


def test_a_postgres_url_without_psycopg_says_which_extra_to_install(tmp_path: Path) -> None:
    # a package directory that shadows psycopg and fails to import, as a missing one does
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\")\n"
    )
    path = os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])
    done = memberlab(
        "keys",
        "create",
        "--scope",
        "admin",
        "--database-url",
        "postgresql://u:pw@localhost/db",
        env={"PYTHONPATH": path},
    )
    line = one_line_error(done)
    assert 'pip install "memberlab[postgres]"' in line, line
    assert "pw" not in line.replace("psycopg", "")  # the password is masked


def test_serve_refuses_crosses_no_item_can_fire_when_items_exist(tmp_path: Path) -> None:
    from memberlab.store import Store

    db = str(tmp_path / "m.db")
    store = Store(db)
    store.upsert_item("a", {"benefit": "video", "brand": "x"})
    store.close()
    line = one_line_error(memberlab("serve", "--database-url", db, "--crosses", "page:benefitt"))
    assert "benefitt" in line and "'benefit'" in line and "'brand'" in line, line


def test_keys_list_and_revoke_through_the_cli_and_a_real_server(
    serve: Callable[..., Server], keys: Keys, database_url: str
) -> None:
    """A key revoked with ``memberlab keys revoke`` is refused by every worker within the
    key cache TTL (1 s here; default 5 s), and the admin endpoints list and revoke too."""
    server = serve("--train-interval", "0", "--workers", "2", env={"MEMBERLAB_KEY_CACHE_TTL": "1"})
    admin = server.client(keys.admin)
    made = memberlab(
        "keys", "create", "--scope", "decide", "--label", "ci", "--database-url", database_url
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    listed = memberlab("keys", "list", "--database-url", database_url)
    assert listed.returncode == 0, listed.stderr
    rows = [ln.split("\t") for ln in listed.stdout.splitlines()]
    assert [key[:16], "decide"] == rows[-1][:2] and rows[-1][3:] == ["active", "ci"]
    assert all(key not in ln for ln in listed.stdout.splitlines())  # never the key itself
    user = server.client(key)
    pids = set()
    for _ in range(40):  # warm the key cache of both workers
        r = user.get("/healthz")
        pids.add(r.json()["pid"])
        assert user.post("/v1/callouts/decisions", json={}).status_code in (409, 200)
    revoked = memberlab("keys", "revoke", key[:16], "--database-url", database_url)
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout, revoked.stderr
    t0 = time.monotonic()
    time.sleep(1.2)
    codes = {user.post("/v1/callouts/decisions", json={}).status_code for _ in range(40)}
    assert codes == {401}, (codes, time.monotonic() - t0)
    again = memberlab("keys", "revoke", key[:16], "--database-url", database_url)
    one_line_error(again)
    # the admin endpoints: create, list, revoke (this worker at once)
    r = admin.post("/v1/admin/keys", json={"scope": "decide", "label": "api"})
    assert r.status_code == 201, r.text
    new = r.json()["key"]
    listing = admin.get("/v1/admin/keys").json()["keys"]
    assert {k["prefix"]: k["revoked"] for k in listing}[key[:16]] is True
    assert new not in str(listing)
    out = admin.delete(f"/v1/admin/keys/{new[:16]}")
    assert out.status_code == 200 and out.json()["takes_effect_within"] == 1.0, out.text
    assert admin.delete(f"/v1/admin/keys/{new[:16]}").status_code == 404
    time.sleep(1.2)
    assert (
        httpx.get(
            f"{server.base_url}/v1/admin/stats", headers={"Authorization": f"Bearer {new}"}
        ).status_code
        == 401
    )


def test_exploration_setting_reaches_a_new_recommender(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--exploration`` / ``MEMBERLAB_EXPLORATION`` set the first snapshot's scale."""
    from memberlab.service._policy import new_recommender
    from memberlab.service.settings import Settings

    assert new_recommender(Settings()).exploration == 1.0
    monkeypatch.setenv("MEMBERLAB_EXPLORATION", "0.25")
    assert new_recommender(Settings.from_env()).exploration == 0.25
