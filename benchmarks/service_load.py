"""Open-loop HTTP load on the decision service, and its ratio to a minimal FastAPI app.

The default run prints one table: for 1 and 2 server worker processes, the highest
decision rate whose p99 latency stays under ``--p99-target`` (50 ms) with no errors, for
the smallest FastAPI app doing the same HTTP work (``_baseline_app.py``: bearer header
and JSON body parsed, JSON answered) and for ``memberlab serve`` on SQLite with click
events and the trainer running, both served by the same uvicorn settings
(:func:`memberlab.service.launch.run_uvicorn`), measured in the same run; their ratio;
and the scaling from 1 to 2 workers.

Load: open loop (a request is sent at its scheduled time whether or not earlier ones have
answered; latency is measured from the scheduled time, so queueing counts), from this
process (the servers are separate processes, on 127.0.0.1 only), with 64 keep-alive
connections. 20% of decisions are followed by a click event within 2 s; events go out
in batches every 100 ms, as a web beacon would. The trainer runs every second on a 5 s
attribution window, so it closes windows and publishes snapshots during the load; each
memberlab row says how many windows it closed and how many versions it published while
measuring. A rate is found by doubling from ``--start`` until p99 misses the target,
then bisecting ``--refine`` times between the last rate that held and the first that
did not (each rate on a freshly started server, after 2 s of warm-up and, for memberlab,
once the trainer has closed the warm-up's windows). The baseline's and memberlab's
searches take turns, one trial each, so both sides of the ratio see the same machine.
Latency counts from the scheduled send time, so a load generator that falls behind (on a
busy machine) only makes p99 worse; each row prints its late sends (more than 5 ms behind schedule).

    python benchmarks/service_load.py                        # the table (about 10 min)
    python benchmarks/service_load.py --duration 20          # steadier, about 20 min
    python benchmarks/service_load.py --rate 500 --backend postgres   # one fixed rate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_lines
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
    sends: int = 0
    client_cpu: float = 0.0
    server_cpu: float = float("nan")  # CPU seconds of the server's processes while measuring
    closed: int = -1  # memberlab only: windows the trainer closed while measuring
    versions: int = 0

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
            "server_cpu_ms_per_decision": 1e3 * self.server_cpu / max(self.decisions, 1),
            "errors": self.errors,
        }


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group
    ``pgid`` (the server: its workers and, for memberlab, the trainer), from /proc.

    CPU per decision is steadier than a rate on a machine shared with other work, so it
    is printed beside each trial; nan where /proc is not there."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, seen = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name (field 2) may hold spaces: split after its closing paren
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5, pgrp
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            seen = True
    return total if seen else float("nan")


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection (much less CPU per request than
    httpx, so the load generator steals little of the server's CPU on a small machine)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.head = (
            f"Host: {HOST}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(
            b"%s %s HTTP/1.1\r\n%s%d\r\n\r\n%s"
            % (method.encode(), path.encode(), self.head, len(data), data)
        )
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            i = head.lower().find(b"content-length:")
            length = int(head[i + 15 : head.index(b"\r\n", i)]) if i >= 0 else 0
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

    async def request(self, method: str, path: str, data: bytes) -> tuple[int, bytes]:
        conn = await self.free.get()
        try:
            return await conn.request(method, path, data)
        finally:
            self.free.put_nowait(conn)


async def drive(port: int, key: str, rate: float, duration: float, res: Result) -> None:
    """Send decisions at ``rate`` per second for ``duration`` seconds (open loop), and
    a click event batch every 100 ms."""
    pool = Pool(port, key, 64)
    rng = np.random.default_rng(0)
    bodies = [json.dumps({"context": shopper(rng)}).encode() for _ in range(500)]
    outbox: list[tuple[float, dict[str, Any]]] = []
    tasks: set[asyncio.Task[None]] = set()
    cpu0 = time.process_time()
    start = time.perf_counter()

    async def one_decision(scheduled: float) -> None:
        try:
            status, payload = await pool.request(
                "POST", "/v1/callouts/decisions", bodies[random.randrange(len(bodies))]
            )
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
            data = json.dumps({"events": batch}).encode()
            status, payload = await pool.request("POST", "/v1/events", data)
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
        elif delay < -0.005:
            res.late_sends += 1
        task = asyncio.create_task(one_decision(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    res.sends = i
    await ev_task
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    res.client_cpu = time.process_time() - cpu0


def run_drive(port: int, key: str, rate: float, duration: float, res: Result) -> None:
    """:func:`drive` on uvloop when installed (less load-generator CPU per request)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(drive(port, key, rate, duration, res))
    else:
        uvloop.run(drive(port, key, rate, duration, res))


CLICK_RATE = 0.2
TRAIN_INTERVAL = 1.0


def start_memberlab(url: str, workers: int, log: Path) -> Server:
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
    """The same load on :mod:`_baseline_app`, served by the same uvicorn settings."""
    port = launch.free_port(HOST)
    cmd = launch.uvicorn_command("_baseline_app:create_app", host=HOST, port=port, workers=workers)
    log = Path(tempfile.gettempdir()) / "memberlab-bench-baseline.log"
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])
    server = launch.start_command(
        cmd, host=HOST, port=port, log_path=log, env={"PYTHONPATH": path}, workers=workers
    )
    try:
        run_drive(port, "none", min(rate, 200), 2.0, Result("baseline", rate, 2.0))
        res = Result("baseline", rate, duration)
        cpu0 = group_cpu(server.proc.pid)
        run_drive(port, "none", rate, duration, res)
        res.server_cpu = group_cpu(server.proc.pid) - cpu0
        res.error_samples = res.error_samples[:5]
        return res
    finally:
        server.stop(timeout=20)


def run_memberlab(backend: str, url: str, rate: float, duration: float, workers: int) -> Result:
    store = Store(url)
    key = store.create_api_key("admin", label="bench")
    store.close()
    log = Path(tempfile.gettempdir()) / f"memberlab-bench-{backend}.log"
    server = start_memberlab(url, workers, log)
    try:
        with server.client(key) as c:
            for item_id, attrs in CATALOG.items():
                c.put(f"/v1/callouts/items/{item_id}", json={"attributes": attrs})
            run_drive(server.port, key, min(rate, 200), 2.0, Result(backend, rate, 2.0))
            # measure only once the trainer process is up (it imports for several seconds
            # on a busy machine) and has closed the warm-up's windows
            deadline = time.monotonic() + 120
            while (before := c.get("/v1/admin/stats").json())["closed"] == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the trainer closed no window in 120 s: {before}")
                time.sleep(0.5)
            res = Result(backend, rate, duration)
            cpu0 = group_cpu(server.proc.pid)
            run_drive(server.port, key, rate, duration, res)
            res.server_cpu = group_cpu(server.proc.pid) - cpu0
            after = c.get("/v1/admin/stats").json()
        res.closed = after["closed"] - before["closed"]
        res.versions = after["policy_version"] - before["policy_version"]
        res.error_samples = res.error_samples[:5]
        return res
    finally:
        server.stop(timeout=20)


@dataclass
class Found:
    """What a search found: the highest rate that held and the lowest that did not."""

    held: float | None = None
    held_p99: float = float("nan")
    missed: float | None = None
    missed_p99: float = float("nan")
    generator_lagged: bool = False

    def cell(self) -> str:
        if self.held is None:
            return f"none (p99 {self.missed_p99:.0f} ms at {self.missed:g}/s)"
        out = f"{self.held:g}/s (p99 {self.held_p99:.0f} ms"
        if self.missed is not None:
            out += f"; {self.missed:g}/s: {self.missed_p99:.0f} ms"
        if self.generator_lagged:
            out += "; the load generator lagged"
        return out + ")"


class Search:
    """Double from ``args.start`` until p99 misses the target, then bisect; one trial
    per :meth:`step`, so two searches can take turns on the machine."""

    def __init__(self, name: str, run: Any, args: Any) -> None:
        self.name, self.run, self.args = name, run, args
        self.found = Found()
        self.rate: float | None = args.start
        self.refined = 0

    def _next(self, ok: bool) -> float | None:
        f, a = self.found, self.args
        if f.missed is None:
            nxt = (self.rate or a.start) * 2 if ok else None
            return nxt if nxt is not None and nxt <= a.max_rate else None
        if f.held is None or self.refined >= a.refine:
            return None
        mid = round((f.held + f.missed) / 2 / 10) * 10
        return None if mid in (f.held, f.missed) else mid

    def step(self) -> bool:
        """Run the next trial; False once the search is done."""
        if self.rate is None:
            return False
        rate, args, found = self.rate, self.args, self.found
        if found.missed is not None:
            self.refined += 1
        res = self.run(rate)
        s = res.summary()
        p99 = s["decision_p99_ms"]
        ok = p99 < args.p99_target and res.errors == 0
        extra = ""
        if res.closed >= 0:
            extra = f", trainer closed {res.closed}, published {res.versions}"
        print(
            f"  {self.name:9s} {rate:6.0f}/s: achieved {s['achieved_decisions_per_s']:6.0f}/s, "
            f"p50 {s['decision_p50_ms']:6.1f}, p99 {p99:7.1f}, max {s['decision_max_ms']:7.1f} ms, "
            f"errors {res.errors}, late sends {res.late_sends}, generator CPU "
            f"{1e3 * res.client_cpu / max(res.sends, 1):.2f} ms/decision, server CPU "
            f"{s['server_cpu_ms_per_decision']:.2f} ms/decision{extra}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if res.error_samples:
            print(f"    errors: {res.error_samples[:2]}")
        if ok:
            found.held, found.held_p99 = rate, p99
            found.generator_lagged = res.late_sends > 0.01 * max(res.sends, 1)
        else:
            found.missed, found.missed_p99 = rate, p99
        self.rate = self._next(ok)
        return self.rate is not None


def compare(args: Any, tmp: str) -> None:
    """The table: minimal FastAPI and memberlab serve, 1 and 2 workers, same run.

    The two searches take turns (a baseline trial, then a memberlab trial, ...), so a
    change in what else the machine is doing falls on both sides of the ratio."""
    out: dict[tuple[str, int], Found] = {}
    counts = [int(w) for w in args.workers.split(",")]
    for workers in counts:

        def ml(rate: float, workers: int = workers) -> Result:
            url = f"sqlite:///{tmp}/cmp-{workers}-{int(rate)}.db"
            return run_memberlab("sqlite", url, rate, args.duration, workers)

        print(
            f"workers {workers}: minimal FastAPI app (_baseline_app.py) and memberlab serve "
            f"(SQLite, events, trainer every {TRAIN_INTERVAL:g} s), same uvicorn settings, "
            "trials in turn"
        )
        base = Search("baseline", lambda r, w=workers: run_baseline(r, args.duration, w), args)
        mine = Search("memberlab", ml, args)
        going = [base, mine]
        while going:
            going = [s for s in going if s.step()]
        out["baseline", workers], out["memberlab", workers] = base.found, mine.found
    print(
        f"\nHighest decision rate with p99 < {args.p99_target:g} ms and no errors "
        f"({args.duration:g} s per rate; load average now "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}):\n"
    )
    print("| workers | minimal FastAPI | memberlab serve | ratio |")
    print("|---|---|---|---|")
    for workers in counts:
        b, m = out["baseline", workers], out["memberlab", workers]
        ratio = f"{m.held / b.held:.2f}" if m.held and b.held else "-"
        print(f"| {workers} | {b.cell()} | {m.cell()} | {ratio} |")
    print()
    for name in ("baseline", "memberlab"):
        if not {1, 2} <= set(counts):
            break
        one, two = out[name, 1].held, out[name, 2].held
        if one and two:
            print(f"scaling 1 -> 2 workers, {name}: {two / one:.2f}x")


def banner() -> None:
    for line in machine_lines(
        (
            "memberlab",
            "fastapi",
            "starlette",
            "uvicorn",
            "uvloop",
            "httptools",
            "pydantic",
            "sqlalchemy",
            "psycopg",
            "numpy",
        )
    ):
        print(line)
    print(
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the start "
        "(other work on the machine skews absolute numbers; the ratios are measured in "
        "one run)"
    )


def pg_version(url: str) -> str:
    store = Store(url)
    try:
        import sqlalchemy as sa

        with store.engine.connect() as c:
            return str(c.execute(sa.text("SHOW server_version")).scalar())
    finally:
        store.close()


def fixed_rate(args: Any) -> None:
    """One fixed rate on one backend (``--rate``)."""
    tmp = tempfile.TemporaryDirectory(prefix="memberlab-bench-")
    schema = None
    try:
        if args.backend == "sqlite":
            url = f"sqlite:///{tmp.name}/bench.db"
        else:
            schema = f"bench_{secrets.token_hex(4)}"
            _pg_exec(args.postgres_url, f"CREATE SCHEMA {schema}")
            url = f"{args.postgres_url}?options=-csearch_path%3D{schema}"
            print(f"PostgreSQL {pg_version(url)}")
        print(f"{args.backend}: {args.rate:g}/s for {args.duration:g} s, workers {args.workers}")
        workers = int(args.workers.split(",")[0])
        res = run_memberlab(args.backend, url, args.rate, args.duration, workers)
        s = res.summary()
        print(
            "  " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()})
        )
        print(
            f"  late sends {res.late_sends}; trainer closed {res.closed}, published {res.versions}"
        )
        if res.error_samples:
            print(f"  error samples: {res.error_samples}")
    finally:
        if schema:
            _pg_exec(args.postgres_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        tmp.cleanup()


def main() -> None:
    global CLICK_RATE, TRAIN_INTERVAL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds measured per rate (>= 6: the trainer closes windows while measuring)",
    )
    ap.add_argument("--p99-target", type=float, default=50.0, help="ms")
    ap.add_argument("--start", type=float, default=25.0, help="first rate of the search")
    ap.add_argument("--max-rate", type=float, default=10_000.0)
    ap.add_argument("--refine", type=int, default=3, help="bisection steps after doubling")
    ap.add_argument("--click-rate", type=float, default=0.2)
    ap.add_argument("--train-interval", type=float, default=1.0, help="0: no background trainer")
    ap.add_argument("--rate", type=float, help="instead of the table: one fixed rate")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite", help="--rate")
    ap.add_argument(
        "--workers", default="1,2", help="worker counts of the table (--rate: the first)"
    )
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "MEMBERLAB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = ap.parse_args()
    CLICK_RATE = args.click_rate
    TRAIN_INTERVAL = args.train_interval
    banner()
    if args.rate is not None:
        fixed_rate(args)
        return
    with tempfile.TemporaryDirectory(prefix="memberlab-bench-") as tmp:
        compare(args, tmp)


def _pg_exec(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(sql)


if __name__ == "__main__":
    main()
