"""The trainer and settings without HTTP: concurrent trainers on one database never
publish a version twice nor close an impression twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from memberlab.service import Settings
from memberlab.service._layouts import LayoutsHolder
from memberlab.service._policy import CalloutsHolder
from memberlab.service._trainer import Trainer
from memberlab.store import DecisionRecord, EventRecord, Store


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERLAB_ATTRIBUTION_WINDOW", "90")
    monkeypatch.setenv("MEMBERLAB_PROPENSITY_DRAWS", "50")
    monkeypatch.setenv("MEMBERLAB_CROSSES", "page:benefit, member:brand")
    s = Settings.from_env(train_interval=0.5)
    assert (s.attribution_window, s.propensity_draws, s.train_interval) == (90.0, 50, 0.5)
    assert s.crosses == ("page:benefit", "member:brand")
    monkeypatch.setenv("MEMBERLAB_CROSSES", "pagebenefit")
    with pytest.raises(ValueError, match="context_key:item_attribute"):
        Settings.from_env()
    monkeypatch.setenv("MEMBERLAB_CROSSES", "")
    monkeypatch.setenv("MEMBERLAB_ATTRIBUTION_WINDOW", "-1")
    with pytest.raises(ValueError, match="attribution_window"):
        Settings.from_env()


def test_concurrent_trainers_close_each_impression_once(database_url: str) -> None:
    settings = Settings(database_url=database_url, attribution_window=10, lease_ttl=30)
    setup = Store(database_url)
    holder = CalloutsHolder(setup, settings)
    holder.ensure_initial()
    holder.publish_change(
        lambda rec: [
            (rec.catalog.add(i, {"benefit": i}), setup.upsert_item(i, {"benefit": i}))
            for i in ("a", "b")
        ],
        reason="items",
    )
    n = 300
    for k in range(n):
        item = "ab"[k % 2]
        setup.log_decision(
            DecisionRecord(
                f"d{k}", "callouts", "", {"k": str(k % 3)}, [item], 1, k, 100.0 + k, True
            ),
            [(item, 0.5)],
            window=10,
        )
    setup.add_events(
        [
            EventRecord(f"e{k}", f"d{k}", "ab"[k % 2], "click", None, 101.0 + k, True)
            for k in range(0, n, 3)
        ]
    )
    start_version = setup.latest_version("callouts")
    results = []
    lock = threading.Lock()

    def run() -> None:
        store = Store(database_url, migrate=False)
        s = Settings(database_url=database_url, attribution_window=10, train_batch_limit=37)
        trainer = Trainer(store, s, CalloutsHolder(store, s), LayoutsHolder(store, s))
        for _ in range(15):
            r = trainer.step(wait=5.0)
            with lock:
                results.append(r)
            time.sleep(0.001)
        store.close()

    # the data clock (last event, t = 100 + 298 + 1) closes every window but the last few
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    published = [r.policy_version for r in results if r.closed]
    assert len(published) == len(set(published))  # no version published twice
    assert sum(r.closed for r in results) == setup.stats().closed
    stats = setup.stats()
    assert stats.closed + stats.pending == n
    assert stats.positives == sum(1 for k in range(0, n, 3) if 100.0 + k + 10 <= 399.0)
    assert setup.latest_version("callouts") == start_version + len(published)
    setup.close()


def test_every_write_of_a_step_runs_where_the_trainer_says(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The trainer process runs its computing at low CPU priority and its write
    transactions on a thread of normal priority (they hold the database's write lock):
    every write transaction of a step must go through ``writes``."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import contextmanager

    url = f"sqlite:///{tmp_path}/m.db"
    settings = Settings(database_url=url, attribution_window=10)
    store = Store(url)
    holder = CalloutsHolder(store, settings)
    holder.ensure_initial()
    holder.publish_change(
        lambda rec: (
            rec.catalog.add("a", {"benefit": "a"}),
            store.upsert_item("a", {"benefit": "a"}),
        ),
        reason="items",
    )
    for k in range(20):
        store.log_decision(
            DecisionRecord(f"d{k}", "callouts", "", {"k": "x"}, ["a"], 1, k, 100.0 + k, True),
            [("a", 0.5)],
            window=10,
        )
    store.add_events([EventRecord("e0", "d0", "a", "click", None, 105.0, True)])
    writer = ThreadPoolExecutor(1, thread_name_prefix="writes")
    write_threads: list[str] = []
    inner = store._tx

    @contextmanager
    def tx(*, write: bool = True):  # type: ignore[no-untyped-def]
        if write:
            write_threads.append(threading.current_thread().name)
        with inner(write=write) as conn:
            yield conn

    store._tx = tx  # type: ignore[method-assign]
    trainer = Trainer(
        store,
        settings,
        holder,
        LayoutsHolder(store, settings),
        writes=lambda fn: writer.submit(fn).result(),
    )
    try:
        result = trainer.step()
        assert result.closed == 10 and result.positives == 1, result  # data clock: t = 119
        assert write_threads and all(t.startswith("writes") for t in write_threads), write_threads
    finally:
        writer.shutdown()
        store.close()


def test_a_newer_snapshot_is_decoded_off_the_request_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/m.db"
    settings = Settings(database_url=url, snapshot_poll_interval=0.0)
    store, other = Store(url), Store(url)
    try:
        serving = CalloutsHolder(store, settings)
        serving.ensure_initial()
        _, v0 = serving.current()
        decoded_on: list[str] = []
        load = serving.kind.load

        def recording_load(data: bytes):  # type: ignore[no-untyped-def]
            decoded_on.append(threading.current_thread().name)
            return load(data)

        serving.kind = dataclasses.replace(serving.kind, load=recording_load)
        publisher = CalloutsHolder(other, settings)  # the trainer, in another process
        publisher.publish_change(lambda rec: rec.catalog.add("a", {"benefit": "a"}), reason="items")
        # the request that finds the newer version goes on with the one it has ...
        assert serving.current()[1] == v0
        deadline = time.monotonic() + 10
        while serving.current()[1] == v0:  # ... while another thread decodes it
            assert time.monotonic() < deadline, "the newer snapshot was never swapped in"
            time.sleep(0.01)
        assert serving.current()[1] == v0 + 1 and "a" in serving.current()[0].catalog
        main = threading.main_thread().name
        assert decoded_on and main not in decoded_on, decoded_on
        # an idle process (no poll for longer than the interval) loads on the spot
        publisher.publish_change(lambda rec: rec.catalog.add("b", {"benefit": "b"}), reason="items")
        time.sleep(0.3)
        assert serving.current()[1] == v0 + 2 and decoded_on[-1] == main
    finally:
        store.close()
        other.close()


def test_the_trainer_process_yields_the_cpu_to_the_workers(serve, keys) -> None:  # type: ignore[no-untyped-def]
    """The trainer's steps are bursts of CPU; on a machine with fewer cores than
    processes they must not take the workers' CPU mid-request (nice +10)."""
    import os
    import time
    from pathlib import Path

    from memberlab.service._trainer import TRAINER_NICE

    server = serve("--train-interval", "1")  # one worker: the trainer is the one child

    def nice(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    deadline = time.monotonic() + 30
    while True:
        kids = [
            int(p.name)
            for p in Path("/proc").glob("[0-9]*")
            if p.joinpath("stat").exists()
            and int(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == server.proc.pid
            and b"spawn_main" in p.joinpath("cmdline").read_bytes()
        ]
        # the process sets its niceness first thing, once it has been spawned
        if len(kids) == 1 and nice(kids[0]) != nice(server.proc.pid):
            break
        assert len(kids) <= 1, kids
        assert time.monotonic() < deadline, f"no reniced trainer process in 30 s: {kids}"
        time.sleep(0.2)
    assert nice(kids[0]) == nice(server.proc.pid) + TRAINER_NICE, nice(kids[0])
    assert nice(server.proc.pid) == nice(os.getpid())  # the workers keep the caller's
    # ... except the thread that runs its write transactions, which keeps the caller's
    # priority so that it never holds the database's write lock at low priority
    threads = [
        int(t.joinpath("stat").read_text().rsplit(")", 1)[1].split()[16])
        for t in Path(f"/proc/{kids[0]}/task").iterdir()
    ]
    assert nice(server.proc.pid) in threads, threads
