"""Group commit on the caller's event loop: writes queued in one loop iteration share
one transaction (decisions with their impressions; click and conversion events).

A write is acknowledged only after the transaction holding its rows has committed,
so nothing acknowledged is lost in a crash; what is shared is the transaction. A
request that writes queues its rows and awaits; the first one schedules a
flush for the end of the current loop iteration (``call_soon``), which writes every
row queued by then in one ``BEGIN``/``COMMIT`` and wakes their requests. Nothing waits
to fill a batch: an idle service commits a lone decision at once. A busy one commits at
most once per :data:`_GATHER` (a flush follows the previous one by that long at least),
so under load the writes of about a millisecond share one transaction: each lone commit
costs about 50 us of CPU beyond its rows and appends ~25 KB of pages to SQLite's WAL.

The flush runs on the loop itself, not on a thread: on the small, shared machines the
service runs on, waking another thread (and handing it the GIL) costs more than the
write. It never blocks the loop on a lock another process holds: when the database's
single writer lock (SQLite) is taken, the flush gives way and tries again a moment
later, and the rows that arrive meanwhile join the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["LoopGroupCommit", "Rows"]

T = TypeVar("T")  # what one request writes
R = TypeVar("R")  # what the write answers it

log = logging.getLogger("memberlab.store")

#: (decision row, impression rows)
Rows = tuple[tuple[Any, ...], Sequence[tuple[Any, ...]]]

#: seconds between attempts while another process holds the write lock: short, since
#: another worker's commit holds it for about 0.2 ms (a longer pause, up to 4 ms, only
#: added to the p99 of two workers sharing one SQLite file)
_RETRY = (0.0002, 0.0005, 0.001)
#: seconds from one flush to the next at least (see the module's docstring)
_GATHER = 0.001


class LoopGroupCommit(Generic[T, R]):
    """Batches the writes of one event loop iteration into one transaction.

    Parameters
    ----------
    try_write : callable (list of T) -> list of R, or None
        Writes and commits every item in one transaction and returns one result per
        item; returns None, having written nothing, when the write lock is busy (try
        again later).
    write : callable (list of T) -> list of R
        The same, waiting for the lock (used to write items one by one after a batch
        failed, so that one bad item fails only its own request).
    """

    def __init__(
        self,
        try_write: Callable[[list[T]], list[R] | None],
        write: Callable[[list[T]], list[R]],
    ) -> None:
        self._try_write = try_write
        self._write = write
        self._queues: dict[asyncio.AbstractEventLoop, _LoopQueue[T, R]] = {}

    async def submit(self, item: T) -> R:
        """Queue ``item``; returns its result once committed (raises what the write did)."""
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            if len(self._queues) > 16:  # loops of finished test clients
                for old in [lp for lp in self._queues if lp.is_closed()]:
                    del self._queues[old]
            q = self._queues[loop] = _LoopQueue(loop, self)
        fut: asyncio.Future[R] = loop.create_future()
        q.add(item, fut)
        return await fut


class _LoopQueue(Generic[T, R]):
    def __init__(self, loop: asyncio.AbstractEventLoop, owner: LoopGroupCommit[T, R]) -> None:
        self.loop, self.owner = loop, owner
        self.items: list[tuple[T, asyncio.Future[R]]] = []
        self.scheduled = False
        self.attempt = 0
        self.last = -1.0  # loop time of the last flush

    def add(self, item: T, fut: asyncio.Future[R]) -> None:
        self.items.append((item, fut))
        if not self.scheduled:
            self.scheduled = True
            wait = self.last + _GATHER - self.loop.time()
            if wait > 0:
                self.loop.call_later(wait, self.flush)
            else:
                self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.last = self.loop.time()
        batch, self.items = self.items, []
        try:
            results = self.owner._try_write([item for item, _ in batch])
        except Exception as exc:
            self.scheduled = False
            self.attempt = 0
            self._fail(batch, exc)
            return
        if results is None:  # the write lock is busy: later, with whatever arrives meanwhile
            self.items = batch + self.items
            delay = _RETRY[min(self.attempt, len(_RETRY) - 1)]
            self.attempt += 1
            self.loop.call_later(delay, self.flush)
            return
        self.attempt = 0
        self.scheduled = False
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():  # a cancelled request (client gone): its rows are in
                fut.set_result(result)

    def _fail(self, batch: list[tuple[T, asyncio.Future[R]]], exc: Exception) -> None:
        if len(batch) > 1:
            log.warning("group commit of %d writes failed (%s); writing singly", len(batch), exc)
        for item, fut in batch:
            err: Exception | None = exc
            result: list[R] = []
            if len(batch) > 1:
                try:
                    result = self.owner._write([item])
                    err = None
                except Exception as one:
                    err = one
            if fut.done():
                continue
            if err is None:
                fut.set_result(result[0])
            else:
                fut.set_exception(err)
