"""Fixed-rate load on the decision service: decisions plus their delayed click events.

Starts ``memberlab serve`` (a separate process, on 127.0.0.1 only) on SQLite and/or
PostgreSQL, then drives it from this process at a fixed request rate (open loop: a request
is sent at its scheduled time whether or not earlier ones have answered, and latency is
measured from the scheduled time, so queueing shows up in the numbers). Each decision is
followed, with probability ``--click-rate`` and after a random delay of up to 2 s, by a
click event; events go out in batches every 100 ms (as a website's beacon would). The
trainer runs every second on a 5 s attribution window, so it works during the load.

Reports achieved rates, p50/p90/p99/max latency of decisions and event batches, and
errors, with the machine and versions. ``--sweep`` also finds the highest decision rate
whose p99 stays under ``--p99-target`` ms.

    .venv/bin/python benchmarks/service_load.py                      # 60 s at 500/s, both
    .venv/bin/python benchmarks/service_load.py --duration 15 --backend sqlite
    .venv/bin/python benchmarks/service_load.py --sweep --duration 20
    .venv/bin/python benchmarks/service_load.py --compare --duration 10   # vs minimal FastAPI
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from memberlab.service import launch
from memberlab.service.demo import CATALOG, CROSSES, shopper
from memberlab.service.launch import Server
from memberlab.store import Store

HOST = "127.0.0.1"  # never anything else


@dataclass
class Result:
    backend: str
    rate: float
    duration: float
    decisions: int = 0
    events: int = 0
    event_batches: int = 0
    errors: int = 0
    dec_lat: list[float] = field(default_factory=list)
    ev_lat: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    late_sends: int = 0

    def summary(self) -> dict[str, Any]:
        def q(xs: list[float], p: float) -> float:
            return float(np.percentile(xs, p)) * 1000 if xs else float("nan")

        return {
            "backend": self.backend,
            "target_rate": self.rate,
            "achieved_decisions_per_s": self.decisions / self.duration,
            "events_per_s": self.events / self.duration,
            "decision_p50_ms": q(self.dec_lat, 50),
            "decision_p90_ms": q(self.dec_lat, 90),
            "decision_p99_ms": q(self.dec_lat, 99),
            "decision_max_ms": q(self.dec_lat, 100),
            "event_batch_p50_ms": q(self.ev_lat, 50),
            "event_batch_p99_ms": q(self.ev_lat, 99),
            "errors": self.errors,
        }


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection (lower overhead than httpx, so the
    load generator does not steal the server's CPU on a small machine)."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        try:
            status_line = await self.reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await self.reader.readexactly(length)
        except Exception:
            self.writer.close()
            self.writer = None
            raise
        return status, payload


class Pool:
    def __init__(self, port: int, key: str, size: int) -> None:
        self.free: asyncio.Queue[Conn] = asyncio.Queue()
        for _ in range(size):
            self.free.put_nowait(Conn(port, key))

    async def request(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        conn = await self.free.get()
        try:
            return await conn.request(method, path, body)
        finally:
            self.free.put_nowait(conn)


async def drive(port: int, key: str, rate: float, duration: float, res: Result) -> None:
    pool = Pool(port, key, 64)
    rng = np.random.default_rng(0)
    contexts = [shopper(rng) for _ in range(500)]
    outbox: list[tuple[float, dict[str, Any]]] = []
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one_decision(scheduled: float) -> None:
        ctx = contexts[random.randrange(len(contexts))]
        try:
            status, payload = await pool.request("POST", "/v1/callouts/decisions", {"context": ctx})
        except Exception as exc:
            res.errors += 1
            res.error_samples.append(repr(exc))
            return
        res.dec_lat.append(time.perf_counter() - scheduled)
        if status != 200:
            res.errors += 1
            res.error_samples.append(f"{status} {payload[:200]!r}")
            return
        res.decisions += 1
        if random.random() < CLICK_RATE:
            d = json.loads(payload)
            ev = {
                "event_id": secrets.token_hex(8),
                "decision_id": d["decision_id"],
                "item_id": d["items"][0]["item_id"],
                "type": "click",
            }
            outbox.append((time.perf_counter() + random.uniform(0, 2.0), ev))

    async def send_events(batch: list[dict[str, Any]], scheduled: float) -> None:
        try:
            status, payload = await pool.request("POST", "/v1/events", {"events": batch})
        except Exception as exc:
            res.errors += 1
            res.error_samples.append(repr(exc))
            return
        res.ev_lat.append(time.perf_counter() - scheduled)
        if status != 202:
            res.errors += 1
            res.error_samples.append(f"{status} {payload[:200]!r}")
            return
        res.events += len(batch)
        res.event_batches += 1

    async def events_loop() -> None:
        while time.perf_counter() - start < duration:
            await asyncio.sleep(0.1)
            now = time.perf_counter()
            due = [e for t, e in outbox if t <= now]
            outbox[:] = [(t, e) for t, e in outbox if t > now]
            if due:
                task = asyncio.create_task(send_events(due, now))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    ev_task = asyncio.create_task(events_loop())
    i = 0
    while True:
        scheduled = start + i / rate
        if scheduled - start >= duration:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            res.late_sends += 1
        task = asyncio.create_task(one_decision(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    await ev_task
    if tasks:
        await asyncio.wait(tasks, timeout=30)


CLICK_RATE = 0.2
TRAIN_INTERVAL = 1.0


def start_server(url: str, workers: int, log: Path) -> Server:
    return launch.start_server(
        url,
        "--workers",
        str(workers),
        "--attribution-window",
        "5",
        "--train-interval",
        str(TRAIN_INTERVAL),
        "--crosses",
        CROSSES,
        host=HOST,
        log_path=log,
    )


def run_baseline(rate: float, duration: float, workers: int) -> Result:
    """The same load on :mod:`_baseline_app` (fixed answers), same uvicorn settings."""
    port = launch.free_port(HOST)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "_baseline_app:create_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "5",
    ]
    log = Path(tempfile.gettempdir()) / "memberlab-bench-baseline.log"
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])
    server = launch.start_command(cmd, host=HOST, port=port, log_path=log, env={"PYTHONPATH": path})
    try:
        asyncio.run(drive(port, "none", min(rate, 200), 2.0, Result("baseline", rate, 2.0)))
        res = Result("baseline", rate, duration)
        asyncio.run(drive(port, "none", rate, duration, res))
        res.error_samples = res.error_samples[:5]
        return res
    finally:
        server.stop(timeout=20)


SWEEP = (25, 50, 100, 200, 300, 400, 600, 800, 1000, 1300, 1600, 2000, 2500, 3200)


def sweep(name: str, run: Any, target: float) -> tuple[float | None, list[dict[str, Any]]]:
    """Rates in :data:`SWEEP` until p99 >= target ms or an error: the highest that held."""
    best, rows = None, []
    for rate in SWEEP:
        res = run(rate)
        s = res.summary()
        rows.append(s)
        ok = s["decision_p99_ms"] < target and s["errors"] == 0
        print(f"  {name} {rate:5d}/s: p99 {s['decision_p99_ms']:7.1f} ms, errors {s['errors']}")
        if not ok:
            break
        best = rate
    return best, rows


def compare(args: Any, tmp: str) -> None:
    """memberlab serve (SQLite, events and trainer running) against the minimal FastAPI
    endpoint, 1 and 2 workers: the highest rate with p99 < target for each, and ratios."""
    out: dict[tuple[str, int], float | None] = {}
    for workers in (1, 2):

        def ml(rate: float, workers: int = workers) -> Result:
            url = f"sqlite:///{tmp}/cmp-{workers}-{int(rate)}.db"
            return run_one("sqlite", url, rate, args.duration, workers)

        print(f"workers {workers}: memberlab serve (SQLite, trainer every {TRAIN_INTERVAL} s)")
        out["memberlab", workers], _ = sweep("memberlab", ml, args.p99_target)
        print(f"workers {workers}: minimal FastAPI endpoint, same uvicorn settings")
        out["baseline", workers], _ = sweep(
            "baseline", lambda r, w=workers: run_baseline(r, args.duration, w), args.p99_target
        )
    print(
        f"\nhighest decision rate with p99 < {args.p99_target:g} ms and no errors "
        f"({args.duration:g} s per rate; rates tried: {list(SWEEP)}):"
    )
    print("| workers | memberlab serve | minimal FastAPI | ratio |")
    print("|---|---|---|---|")
    for workers in (1, 2):
        m, b = out["memberlab", workers], out["baseline", workers]
        ratio = f"{m / b:.2f}" if m and b else "-"
        print(f"| {workers} | {m} | {b} | {ratio} |")
    m1, m2 = out["memberlab", 1], out["memberlab", 2]
    b1, b2 = out["baseline", 1], out["baseline", 2]
    if m1 and m2:
        print(f"scaling 1 -> 2 workers: memberlab {m2 / m1:.2f}x", end="")
        print(f", baseline {b2 / b1:.2f}x" if b1 and b2 else "")


def run_one(backend: str, url: str, rate: float, duration: float, workers: int) -> Result:
    store = Store(url)
    key = store.create_api_key("admin", label="bench")
    store.close()
    log = Path(tempfile.gettempdir()) / f"memberlab-bench-{backend}.log"
    server = start_server(url, workers, log)
    port = server.port
    try:
        import httpx

        with httpx.Client(
            base_url=f"http://{HOST}:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as c:
            for item_id, attrs in CATALOG.items():
                c.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs})
        # warm up: caches, connections
        asyncio.run(drive(port, key, min(rate, 200), 2.0, Result(backend, rate, 2.0)))
        res = Result(backend, rate, duration)
        asyncio.run(drive(port, key, rate, duration, res))
        with httpx.Client(
            base_url=f"http://{HOST}:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as c:
            stats = c.get("/v1/admin/stats").json()
        res.error_samples = res.error_samples[:5]
        print(f"  server counts: {stats}")
        return res
    finally:
        server.stop(timeout=20)


def machine() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pkgs = ["memberlab", "fastapi", "uvicorn", "starlette", "sqlalchemy", "psycopg", "numpy"]
    vers = ", ".join(f"{p} {_v(p)}" for p in pkgs)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.platform()}; {os.cpu_count()} CPUs ({cpu}); load average {load} "
        f"(other work on the machine skews the numbers); Python "
        f"{platform.python_version()}; {vers}"
    )


def _v(p: str) -> str:
    try:
        return version(p)
    except Exception:
        return "-"


def pg_version(url: str) -> str:
    store = Store(url)
    try:
        import sqlalchemy as sa

        with store.engine.connect() as c:
            return str(c.execute(sa.text("SHOW server_version")).scalar())
    finally:
        store.close()


def main() -> None:
    global CLICK_RATE, TRAIN_INTERVAL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="decisions per second")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "MEMBERLAB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--workers", type=int, default=2, help="HTTP server processes")
    ap.add_argument("--click-rate", type=float, default=0.2)
    ap.add_argument("--train-interval", type=float, default=1.0, help="0: no background trainer")
    ap.add_argument("--sweep", action="store_true", help="find the highest rate with p99 < target")
    ap.add_argument("--p99-target", type=float, default=50.0, help="ms, for --sweep")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="sweep memberlab serve (SQLite) and a minimal FastAPI endpoint, 1 and 2 workers",
    )
    args = ap.parse_args()
    CLICK_RATE = args.click_rate
    TRAIN_INTERVAL = args.train_interval
    print(f"machine: {machine()}")
    if args.compare:
        with tempfile.TemporaryDirectory(prefix="memberlab-bench-") as tmp:
            compare(args, tmp)
        return
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    tmp = tempfile.TemporaryDirectory(prefix="memberlab-bench-")
    schemas: list[str] = []
    results = []
    for backend in backends:
        rates = [args.rate]
        if args.sweep:
            rates = [100, 200, 300, 400, 500, 600, 800, 1000, 1200]
        best = None
        for rate in rates:
            if backend == "sqlite":
                url = f"sqlite:///{tmp.name}/bench-{int(rate)}.db"
            else:
                schema = f"bench_{secrets.token_hex(4)}"
                schemas.append(schema)
                _pg_exec(args.postgres_url, f"CREATE SCHEMA {schema}")
                url = f"{args.postgres_url}?options=-csearch_path%3D{schema}"
                print(f"PostgreSQL {pg_version(url)}")
            print(
                f"{backend}: {rate:.0f} decisions/s for {args.duration:.0f} s, "
                f"{args.workers} worker(s)"
            )
            res = run_one(backend, url, rate, args.duration, args.workers)
            s = res.summary()
            results.append(s)
            print(
                "  "
                + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()})
            )
            if res.error_samples:
                print(f"  error samples: {res.error_samples}")
            if s["decision_p99_ms"] < args.p99_target and s["errors"] == 0:
                best = rate
            elif args.sweep:
                break
        if args.sweep:
            print(f"{backend}: highest rate with p99 < {args.p99_target} ms and no errors: {best}")
    for schema in schemas:
        _pg_exec(args.postgres_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    tmp.cleanup()


def _pg_exec(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(sql)


if __name__ == "__main__":
    main()
