"""The trainer: close attribution windows, update the posterior, publish a snapshot.

One step, under the trainer lease (one trainer at a time across every process):

1. ``now`` is the data's own clock (the latest client timestamp) when clients send
   timestamps, else the wall clock;
2. for every policy kind (callouts, layouts; one loop, see
   :class:`~memberlab.service._policy.PolicyKind`), impressions whose window closed by
   ``now`` are read with their rewards (SQL join of the pending ledger with the events);
3. per space, the newest snapshot is loaded, synced with the items table (kinds that
   have one), updated with that feedback and published as the next version in the same
   transaction that marks those impressions closed.

A crash anywhere leaves either the old snapshot with the impressions still pending, or
the new snapshot with them closed: nothing is lost or applied twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

from memberlab.service._heap import freeze_startup_heap
from memberlab.service._layouts import LayoutsHolder
from memberlab.service._policy import (
    KIND,
    CalloutsHolder,
    LeaseBusyError,
    PolicyHolder,
    lease,
    run_here,
    serving_holder,
)
from memberlab.service.settings import Settings
from memberlab.store import DueImpression, Store

__all__ = ["TrainResult", "Trainer"]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: the trainer process's niceness increment (see :func:`run_trainer_process`)
TRAINER_NICE = 10


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What one trainer step did."""

    ran: bool
    reason: str
    now: float | None = None
    clock: str = "wall"
    closed: int = 0
    positives: int = 0
    policy_version: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Trainer steps for one store; :meth:`start` runs them in a background thread."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        callouts: CalloutsHolder,
        layouts: LayoutsHolder | None = None,
        value: PolicyHolder | None = None,
        *,
        writes: Callable[[Callable[[], Any]], Any] | None = None,
    ) -> None:
        self.store = store
        # runs each of the step's write transactions (see run_trainer_process)
        self._writes: Callable[[Callable[[], Any]], Any] = writes or run_here
        self.settings = settings
        self.callouts = callouts
        self.layouts = layouts or LayoutsHolder(store, settings)
        self.value = value  # the value objective's holder, when the service runs it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_result: TrainResult | None = None

    def clock(self) -> tuple[float, str]:
        """The time at which windows close, and which clock it came from."""
        if self.settings.clock == "auto":
            data_now = self.store.data_clock()
            if data_now is not None:
                return data_now, "data"
        return time.time(), "wall"

    @property
    def served(self) -> PolicyHolder:
        """The holder serving callout decisions (its version is ``policy_version``)."""
        return serving_holder(self.callouts, self.value)

    @property
    def holders(self) -> list[PolicyHolder]:
        """Every kind's holder, trained in this order."""
        return [self.callouts, self.layouts, *([self.value] if self.value else [])]

    def step(self, *, wait: float = 0.0) -> TrainResult:
        """Run one step now; does nothing (``ran=False``) if another trainer is running."""
        t0 = time.perf_counter()
        try:
            with lease(self.store, self.settings, wait=wait, writes=self._writes):
                now, clock = self.clock()
                per_kind = {h.kind.name: self._step_kind(h, now) for h in self.holders}
        except LeaseBusyError as exc:
            result = TrainResult(False, str(exc), policy_version=self.served.version_of(""))
        else:
            result = _summarise(per_kind, now, clock, self.served.kind.name)
        result = TrainResult(**{**asdict(result), "seconds": time.perf_counter() - t0})
        if result.closed:
            log.info("trainer closed %d impressions -> v%d", result.closed, result.policy_version)
        self.last_result = result
        return result

    def _step_kind(self, holder: PolicyHolder, now: float) -> dict[str, _SpaceStep]:
        """Close one kind's windows due by ``now``, space by space (lease held)."""
        kind = holder.kind
        due = self.store.due_impressions(
            kind.name,
            now,
            early_hold=self.settings.early_hold,
            limit=self.settings.train_batch_limit,
            conversions=kind.conversions,
        )
        by_space: dict[str, list[DueImpression]] = {}
        for d in due:
            by_space.setdefault(d.space, []).append(d)
        if kind.sync is not None:
            by_space.setdefault("", [])  # a kind synced with the items table: check it
        out: dict[str, _SpaceStep] = {}
        for space, rows in by_space.items():
            policy, base, spec = holder.load_latest(space)
            changed = kind.sync(policy, self.store) if kind.sync is not None else 0
            if not rows and not changed:
                out[space] = _SpaceStep(0, 0, base, False, 0, 0)
                continue
            skipped = _apply(policy.update, kind.feedback(policy, rows))
            publish = partial(
                self.store.publish,
                kind.name,
                policy.to_bytes(),
                base_version=base,
                space=space,
                spec=spec,
                reason="train",
                closed=[(d.decision_id, d.item_id, d.reward) for d in rows],
            )
            version = self._writes(publish)
            out[space] = _SpaceStep(
                len(rows), sum(1 for d in rows if d.reward > 0), version, True, changed, skipped
            )
            holder.current(space, force=True)
        return out

    def start(self) -> None:
        """Run :meth:`step` every ``train_interval`` seconds in a daemon thread."""
        if self.settings.train_interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="memberlab-trainer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.train_interval):
            try:
                self.step()
            except Exception:  # the loop must survive a bad step; the next one retries
                log.exception("trainer step failed")


@dataclass(frozen=True, slots=True)
class _SpaceStep:
    closed: int
    positives: int
    version: int
    published: bool
    changes: int
    skipped: int


def _summarise(
    per_kind: dict[str, dict[str, _SpaceStep]], now: float, clock: str, served: str = KIND
) -> TrainResult:
    """One result for a step over every kind (``policy_version`` is that of the kind
    serving callout decisions, ``served``; closed counts per space of kinds other than
    callouts under ``details[kind]``)."""
    steps = [st for spaces in per_kind.values() for st in spaces.values()]
    empty = _SpaceStep(0, 0, 0, False, 0, 0)
    main = per_kind.get(KIND, {}).get("", empty)
    version = per_kind.get(served, {}).get("", empty).version
    if not any(st.published for st in steps):
        return TrainResult(True, "nothing to do", now, clock, policy_version=version)
    details: dict[str, Any] = {}
    if main.published:
        details = {"catalog_changes": main.changes, "skipped": main.skipped}
    for name, spaces in per_kind.items():
        if name != KIND:
            done = {sp: st.closed for sp, st in spaces.items() if st.published}
            if done:
                details[name] = done
    return TrainResult(
        True,
        "published",
        now,
        clock,
        closed=sum(st.closed for st in steps),
        positives=sum(st.positives for st in steps),
        policy_version=version,
        details=details,
    )


def _apply(update: Callable[[list[Any]], None], batch: list[Any]) -> int:
    """Apply a feedback batch; if the model rejects it, apply row by row and skip the
    rows it rejects (they are still closed), so one bad row never stalls the trainer.
    Row by row equals the batch for sequential ADF. Returns the number skipped."""
    try:
        update(batch)
        return 0
    except (ValueError, KeyError, TypeError):
        log.exception("feedback batch rejected; retrying row by row")
    skipped = 0
    for row in batch:
        try:
            update([row])
        except (ValueError, KeyError, TypeError) as exc:
            skipped += 1
            log.warning("skipping feedback %r: %s", row, exc)
    return skipped


def run_trainer_process(settings_json: str, parent_pid: int) -> None:
    """Entry point of the trainer process ``memberlab serve`` starts beside its workers.

    Exits when its parent is gone (even after a ``kill -9`` of the parent), so a
    restart never leaves a stray trainer behind. Its computing runs at a lower CPU
    priority than the workers (nice +10): a step is a burst of CPU (about 0.15 s a
    second at 1,000 decisions/s), and on a machine with fewer cores than processes it
    took the workers' CPU in the middle of their requests (the p99 of 2 workers on 2
    cores spiked once per step); a window closing a little later costs nothing.

    Its write transactions do not: they hold the database's write lock (SQLite's is one
    for every process), and at nice +10 on busy cores a publish of about 10 ms of CPU
    held it for 40-50 ms, stalling every worker's decision log behind it (priority
    inversion). They run on a thread started before the process lowers its priority
    (on Linux niceness is per thread, and a thread keeps the one it was created with).
    """
    writer = ThreadPoolExecutor(1, thread_name_prefix="memberlab-trainer-writes")
    writer.submit(run_here, lambda: None).result()  # start the thread at the caller's niceness

    def writes(fn: Callable[[], T]) -> T:
        return writer.submit(fn).result()

    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(TRAINER_NICE)
    settings = Settings.model_validate_json(settings_json)
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    holder = CalloutsHolder(store, settings)
    holder.ensure_initial()
    value = None
    if settings.objective == "value":
        from memberlab.service._value import ValueHolder

        value = ValueHolder(store, settings)
        value.ensure_initial()
    trainer = Trainer(store, settings, holder, value=value, writes=writes)
    freeze_startup_heap()  # its full collections would pause the writes thread too
    while os.getppid() == parent_pid:
        time.sleep(settings.train_interval)
        try:
            trainer.step()
        except Exception:  # the loop must survive a bad step; the next one retries
            log.exception("trainer step failed")
    writer.shutdown()
    store.close()
