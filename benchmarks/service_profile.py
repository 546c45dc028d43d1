"""CPU per request of the decision service's hot routes, in process (no sockets).

The ASGI app is called directly (``await app(scope, receive, send)``) with the same
requests the load benchmark sends, so the numbers are the server's own CPU per request
without the network, the HTTP parser or the load generator. Beside it, in the same run,
the minimal FastAPI app of ``_baseline_app.py``: the ratio of the two is the best the HTTP
ratio in ``service_load.py`` could be on one core.

    python benchmarks/service_profile.py                  # the table
    python benchmarks/service_profile.py --profile decide # cProfile of one route
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _baseline_app
from _common import machine_lines
from memberlab.service.app import create_app
from memberlab.service.demo import CATALOG, shopper
from memberlab.service.settings import Settings
from memberlab.store import Store

Request = tuple[str, str, bytes]


def _scope(method: str, path: str, key: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }


async def _call(app: Any, key: str, req: Request) -> tuple[int, bytes]:
    method, path, body = req
    sent = False
    status = 0
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = int(msg["status"])
        elif msg["type"] == "http.response.body":
            out.append(msg.get("body", b""))

    await app(_scope(method, path, key, body), receive, send)
    return status, b"".join(out)


def _decisions(n: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    return [
        ("POST", "/v1/callouts/decisions", json.dumps({"context": shopper(rng), "k": 1}).encode())
        for _ in range(n)
    ]


async def _cpu_per_request(
    app: Any, key: str, reqs: list[Request], *, concurrency: int, check: Callable[[int], bool]
) -> float:
    """CPU seconds per request, ``concurrency`` requests in flight at a time."""
    t0 = time.process_time()
    for i in range(0, len(reqs), concurrency):
        results = await asyncio.gather(*(_call(app, key, r) for r in reqs[i : i + concurrency]))
        for status, body in results:
            if not check(status):
                raise RuntimeError(f"status {status}: {body[:300]!r}")
    return (time.process_time() - t0) / len(reqs)


async def _run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        store = Store(url)
        key = store.create_api_key("admin")
        for item_id, attrs in CATALOG.items():
            store.upsert_item(item_id, attrs)
        settings = Settings(
            database_url=url,
            background_trainer=False,
            propensity_draws=args.propensity_draws,
        )
        app = create_app(settings, store=store)
        base = _baseline_app.create_app()
        async with app.router.lifespan_context(app):
            warm = _decisions(200, 1)
            await _cpu_per_request(app, key, warm, concurrency=8, check=lambda s: s == 200)
            await _cpu_per_request(base, key, warm, concurrency=8, check=lambda s: s == 200)
            reqs = _decisions(args.n, 2)
            if args.profile:
                target = app if args.profile == "decide" else base
                prof = cProfile.Profile()
                prof.enable()
                await _cpu_per_request(target, key, reqs, concurrency=8, check=lambda s: s == 200)
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
                return
            rows = []
            for rnd in range(args.rounds):
                b = await _cpu_per_request(base, key, reqs, concurrency=8, check=lambda s: s == 200)
                m = await _cpu_per_request(app, key, reqs, concurrency=8, check=lambda s: s == 200)
                rows.append((b, m))
                print(
                    f"  round {rnd}: baseline {b * 1e3:.3f} ms, memberlab decide {m * 1e3:.3f} ms"
                )
            b = min(r[0] for r in rows)
            m = min(r[1] for r in rows)
            print(
                f"CPU per decision request (best of {args.rounds} rounds of {args.n}, 8 in flight,"
                f" {args.propensity_draws} propensity draws): baseline {b * 1e3:.3f} ms, "
                f"memberlab {m * 1e3:.3f} ms, ratio of rates {b / m:.2f}"
            )
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="decisions per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--propensity-draws", type=int, default=100)
    ap.add_argument("--profile", choices=["decide", "baseline"])
    args = ap.parse_args()
    for line in machine_lines(["fastapi", "starlette", "pydantic", "numpy", "sqlalchemy"]):
        print(line)
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
