"""``GET /v1/choice/counterfactual`` through a real ``memberlab serve`` (SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _choice_model import fit_choice_model
from _service_server import Keys, Server, start_server

from memberlab.store import Store

CF = "/v1/choice/counterfactual"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_choice_model(tmp_path_factory.mktemp("choice"))


def _keys(url: str) -> Keys:
    store = Store(url)
    try:
        return Keys(store.create_api_key("admin"), store.create_api_key("decide"))
    finally:
        store.close()


@pytest.fixture(scope="module")
def served(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Keys]]:
    """One server with the model given through MEMBERLAB_CHOICE_MODEL."""
    d = tmp_path_factory.mktemp("db")
    url = f"sqlite:///{d}/memberlab.db"
    keys = _keys(url)
    server = start_server(
        url,
        str(d / "serve.log"),
        "--train-interval",
        "0",
        env={"MEMBERLAB_CHOICE_MODEL": str(model_dir)},
    )
    yield server, keys
    server.stop()


def _get(server: Server, key: str, **params: Any) -> httpx.Response:
    with server.client(key) as c:
        return c.get(CF, params=params)


def test_counterfactual_matches_the_library_and_is_cached(
    served: tuple[Server, Keys], model_dir: Path
) -> None:
    server, keys = served
    params = {"shift": ["monthly=-0.5"], "months": 6, "members": 500, "seed": 3}
    r = _get(server, keys.admin, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["cached"] and body["months"] == 6 and body["shift"] == {"monthly": -0.5}
    assert body["actions"] == ["annual", "monthly", "none"]
    assert len(body["shares"]) == 6 * 3 and len(body["metrics"]) == 6 * 2
    for t in range(6):
        rows = [s for s in body["shares"] if s["month"] == t]
        assert abs(sum(s["baseline"] for s in rows) - 1) < 1e-9
        assert abs(sum(s["counterfactual"] for s in rows) - 1) < 1e-9
        for s in rows:
            assert s["counterfactual_lower"] <= s["counterfactual"] <= s["counterfactual_upper"]
    monthly = [s for s in body["shares"] if s["action"] == "monthly"]
    assert sum(s["difference"] for s in monthly) < 0  # a worse monthly plan loses members
    assert all(m["revenue"] is None and m["churn"] is not None for m in body["metrics"])
    again = _get(server, keys.admin, **params).json()
    assert again["cached"] and again["shares"] == body["shares"]

    # the same numbers as `memberlab choice counterfactual --json` (a thin layer)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "memberlab.cli.main", "choice", "counterfactual"),
            *(str(model_dir), "--reward-shift", "monthly=-0.5", "--months", "6"),
            *("--members", "500", "--seed", "3", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    cli = {(s["month"], s["action"]): s for s in json.loads(done.stdout)["shares"]}
    for s in body["shares"]:
        c = cli[(s["month"], s["action"])]
        assert s["baseline"] == pytest.approx(c["baseline"], abs=1e-12)
        assert s["counterfactual"] == pytest.approx(c["counterfactual"], abs=1e-12)


def test_model_and_prices(served: tuple[Server, Keys]) -> None:
    server, keys = served
    with server.client(keys.admin) as c:
        m = c.get("/v1/choice/model").json()
    assert m["anchor"] == "none" and m["actions"] == ["annual", "monthly", "none"]
    assert m["limits"] == {"months": 60, "members": 20_000, "shift": 100.0}
    r = _get(server, keys.admin, shift="annual=0.2", price=["monthly=10", "annual=100"], months=3)
    assert r.status_code == 200, r.text
    assert all(x["revenue"] is not None for x in r.json()["metrics"])


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"shift": "gold=0.1"}, "action 'gold' is not among ['annual', 'monthly', 'none']"),
        ({"shift": "monthly=abc"}, "DELTA 'abc' is not a number"),
        ({"shift": "monthly=nan"}, "must be finite"),
        ({"shift": "monthly=1e9"}, "must be finite and within [-100, 100]"),
        ({"shift": "monthly"}, "must look like ACTION=DELTA"),
        ({"shift": ["monthly=1", "monthly=2"]}, "given twice"),
        ({"months": 0}, "months == 0, must be in [1, 60]"),
        ({"months": 61}, "months == 61, must be in [1, 60]"),
        ({"members": 0}, "members == 0, must be in [1, 20000]"),
        ({"members": 20_001}, "members == 20001, must be in [1, 20000]"),
        ({"months": "twelve"}, "months"),
        ({"seed": -1}, "seed"),
        ({"price": "monthly=cheap"}, "neither a state column"),
    ],
)
def test_bad_queries_get_422_with_a_message(
    served: tuple[Server, Keys], params: dict[str, Any], needle: str
) -> None:
    server, keys = served
    r = _get(server, keys.admin, **params)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert needle in r.json()["message"]


def test_scopes(served: tuple[Server, Keys]) -> None:
    server, keys = served
    assert _get(server, keys.decide).status_code == 403
    assert httpx.get(server.base_url + CF).status_code == 401


def test_without_a_model_404(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/memberlab.db"
    keys = _keys(url)
    env = {"MEMBERLAB_CHOICE_MODEL": ""}
    server = start_server(url, str(tmp_path / "serve.log"), "--train-interval", "0", env=env)
    try:
        with server.client(keys.admin) as c:
            for path in (CF, "/v1/choice/model"):
                r = c.get(path)
                assert r.status_code == 404, r.text
                assert r.json()["error"] == "no_choice_model"
                assert "--choice-model" in r.json()["message"]
    finally:
        server.stop()


def test_serve_refuses_a_directory_without_a_model(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "memberlab.cli.main", "serve"),
            *("--database-url", f"sqlite:///{tmp_path}/m.db", "--choice-model", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode != 0
    assert "cannot load a choice model" in done.stderr and "results.json" in done.stderr
