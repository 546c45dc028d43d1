"""One executor interface for offline jobs: serial, local processes, or Ray.

A job is a list of tasks, each a small picklable value (a shard, a seed), and one
module-level function applied to every task. The split into tasks is the job's, never
the executor's: it does not depend on the backend or the number of workers, and every
task carries its own child seed (:func:`task_seeds`), so a job's numbers are the same
wherever it runs. Results come back in task order and are combined by the job in that
order, so the arithmetic of the combination is the same too.

``map`` fails as a whole when one task fails (its exception, or its worker dying): no
partial result is ever returned. It keeps at most a few tasks per worker in flight, so
memory is bounded by the task results the job keeps, which are meant to be small.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import pickle
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

import numpy as np

from memberlab._errors import DataValidationError, TaskFailedError
from memberlab._rng import RNGLike

__all__ = [
    "BACKENDS",
    "Executor",
    "ProcessExecutor",
    "Progress",
    "RayExecutor",
    "SerialExecutor",
    "get_executor",
    "task_seeds",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Backend = Literal["serial", "processes", "ray"]
BACKENDS: tuple[str, ...] = ("serial", "processes", "ray")

#: Tasks kept in flight per worker (bounds memory: results wait in the parent).
_IN_FLIGHT_PER_WORKER = 4


class Progress(Protocol):
    """Called as ``progress(done, total)`` after each finished task (and once at 0)."""

    def __call__(self, done: int, total: int) -> None: ...


def task_seeds(rng: RNGLike, n_tasks: int) -> list[np.random.SeedSequence]:
    """Child seed sequences for ``n_tasks`` tasks, independent of where they run.

    Parameters
    ----------
    rng : int, SeedSequence, Generator or None
        The job's seed. A Generator contributes its bit generator's seed sequence
        (its state is not advanced), so pass an int for a reproducible job.
    n_tasks : int

    Returns
    -------
    list of SeedSequence
        ``SeedSequence(rng).spawn(n_tasks)``; ``np.random.default_rng(child)`` gives the
        same generators as :func:`memberlab._rng.spawn` for an int seed.
    """
    if n_tasks < 0:
        raise DataValidationError(f"n_tasks == {n_tasks}, must be >= 0.")
    if isinstance(rng, np.random.Generator):
        seq = rng.bit_generator.seed_seq
        if not isinstance(seq, np.random.SeedSequence):
            raise DataValidationError("rng's bit generator has no SeedSequence; pass an int seed.")
        return list(seq.spawn(n_tasks))
    if rng is None or isinstance(rng, int | np.random.SeedSequence):
        base = rng if isinstance(rng, np.random.SeedSequence) else np.random.SeedSequence(rng)
        return list(base.spawn(n_tasks))
    raise TypeError(
        f"rng must be an int, a numpy Generator, a SeedSequence or None, got {type(rng).__name__}."
    )


def _describe(task: Any, limit: int = 120) -> str:
    text = repr(task)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return max(os.cpu_count() or 1, 1)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise DataValidationError(f"workers == {workers!r}, must be an integer >= 1.")
    return int(workers)


class Executor:
    """Base class: ``map`` a function over tasks, in order; use as a context manager.

    Subclasses implement :meth:`_run`. ``fn`` must be a module-level function (so it
    pickles by reference) and tasks and results must pickle.
    """

    name: str = "executor"

    def __init__(self, *, workers: int | None = 1) -> None:
        self.workers = workers

    # -- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Acquire resources (worker pools, a Ray connection); idempotent."""

    def close(self) -> None:
        """Release what :meth:`start` acquired; idempotent."""

    # -- work ---------------------------------------------------------------------------
    def map(
        self,
        fn: Callable[..., R],
        tasks: Sequence[Any],
        *,
        shared: Any = None,
        desc: str | None = None,
        progress: Progress | None = None,
    ) -> list[R]:
        """Apply ``fn`` to every task and return the results in task order.

        Parameters
        ----------
        fn : callable
            ``fn(task)``, or ``fn(shared, task)`` when ``shared`` is given; a
            module-level function.
        tasks : sequence
            Small picklable values (a shard's path or index range, a seed).
        shared : object, optional
            Read-only data every task needs (a panel, a fitted model), sent to each
            worker once rather than with every task.
        desc : str, optional
            What the job is doing, for logs.
        progress : callable, optional
            ``progress(done, total)``, called in the calling process.

        Raises
        ------
        TaskFailedError
            When a task raises or its worker dies; names the task and the cause. No
            partial results are returned.
        """
        tasks = list(tasks)
        total = len(tasks)
        if progress is not None:
            progress(0, total)
        if total == 0:
            return []
        self.start()
        t0 = time.perf_counter()
        out = self._run(fn, tasks, shared, progress)
        logger.info(
            "%s: %d tasks on %s in %.2fs", desc or "job", total, self.name, time.perf_counter() - t0
        )
        return out

    def _run(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, progress: Progress | None
    ) -> list[R]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


def _apply(fn: Callable[..., R], shared: Any, task: Any, has_shared: bool) -> R:
    return fn(shared, task) if has_shared else fn(task)


class SerialExecutor(Executor):
    """Every task in the calling process, in order (the default; no dependencies)."""

    name = "serial"

    def __init__(self, *, workers: int | None = 1) -> None:
        super().__init__(workers=workers)

    def _run(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, progress: Progress | None
    ) -> list[R]:
        out: list[R] = []
        for i, task in enumerate(tasks):
            try:
                out.append(_apply(fn, shared, task, shared is not None))
            except Exception as exc:
                raise TaskFailedError.from_task(i, len(tasks), _describe(task), exc) from exc
            if progress is not None:
                progress(i + 1, len(tasks))
        return out


# ---------------------------------------------------------------------------- processes
_SHARED_CACHE: dict[str, Any] = {}


def _load_shared(path: str) -> Any:
    """The shared payload of one ``map`` call, read once per worker process."""
    if path not in _SHARED_CACHE:
        _SHARED_CACHE.clear()
        with open(path, "rb") as fh:
            _SHARED_CACHE[path] = pickle.load(fh)  # our own temp file, this run
    return _SHARED_CACHE[path]


_MARKER: list[Path] = []  # the marker of the task this worker runs now


def _on_sigterm(signum: int, frame: Any) -> None:
    """A worker the pool terminates (because another died) removes its marker first, so
    the markers left name only the tasks whose workers really died."""
    for marker in _MARKER:
        marker.unlink(missing_ok=True)
    os._exit(128 + signum)


def _worker_init() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def _process_call(
    fn: Callable[..., R], shared_path: str | None, marker_dir: str, index: int, task: Any
) -> R:
    """Run one task in a worker; a marker file says which task this pid is running."""
    marker = Path(marker_dir) / f"{index}"
    marker.write_text(str(os.getpid()))
    _MARKER[:] = [marker]
    try:
        if shared_path is None:
            return fn(task)
        return fn(_load_shared(shared_path), task)
    finally:
        _MARKER.clear()
        marker.unlink(missing_ok=True)


class ProcessExecutor(Executor):
    """Local worker processes (``concurrent.futures`` with the ``spawn`` start method).

    Spawned workers import memberlab afresh, so the behaviour is the same on Linux,
    macOS and Windows, and no state leaks from the parent. The pool is created by
    :meth:`start` (or the first ``map``) and reused until :meth:`close`.
    """

    name = "processes"

    def __init__(self, *, workers: int | None = None) -> None:
        super().__init__(workers=workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        if self._pool is None:
            n = _check_workers(self.workers)
            ctx = multiprocessing.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(
                max_workers=n, mp_context=ctx, initializer=_worker_init
            )
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="memberlab-jobs-")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _run(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, progress: Progress | None
    ) -> list[R]:
        assert self._pool is not None and self._tmp is not None
        n_workers = _check_workers(self.workers)
        call_dir = tempfile.mkdtemp(dir=self._tmp.name)
        shared_path = None
        if shared is not None:
            shared_path = os.path.join(call_dir, "shared.pkl")
            with open(shared_path, "wb") as fh:
                pickle.dump(shared, fh, protocol=pickle.HIGHEST_PROTOCOL)
        markers = os.path.join(call_dir, "running")
        os.mkdir(markers)
        total = len(tasks)
        results: list[Any] = [None] * total
        pending: dict[cf.Future[Any], int] = {}
        self._procs: dict[int, Any] = {}
        next_i = 0
        done = 0
        limit = n_workers * _IN_FLIGHT_PER_WORKER
        pool = self._pool
        try:
            while done < total:
                while next_i < total and len(pending) < limit:
                    fut = pool.submit(
                        _process_call, fn, shared_path, markers, next_i, tasks[next_i]
                    )
                    pending[fut] = next_i
                    next_i += 1
                # the pool forgets its processes once it breaks: keep them to read exit codes
                self._procs.update(getattr(pool, "_processes", None) or {})
                finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in sorted(finished, key=lambda f: pending[f]):
                    i = pending.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, cf.process.BrokenProcessPool):
                        raise self._died(tasks, markers, i, exc) from exc
                    if exc is not None:
                        raise TaskFailedError.from_task(i, total, _describe(tasks[i]), exc) from exc
                    results[i] = fut.result()
                    done += 1
                    if progress is not None:
                        progress(done, total)
        except BaseException:
            for fut in pending:
                fut.cancel()
            if isinstance(pool, cf.ProcessPoolExecutor) and getattr(pool, "_broken", False):
                # a broken pool cannot run anything again: start afresh next time
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        return results

    def _died(
        self, tasks: list[Any], markers: str, fallback: int, exc: BaseException
    ) -> TaskFailedError:
        """Name the task whose worker died, from the marker files and exit codes."""
        procs = {**self._procs, **(getattr(self._pool, "_processes", None) or {})}
        for proc in procs.values():  # let the pool finish terminating the other workers
            proc.join(timeout=2.0)
        running: dict[int, int] = {}
        for p in Path(markers).iterdir():
            try:
                running[int(p.name)] = int(p.read_text() or -1)
            except ValueError:
                continue
        culprits = []
        codes: dict[int, int | None] = {}
        for i, pid in sorted(running.items()):
            proc = procs.get(pid)
            code = None
            if proc is not None:
                proc.join(timeout=1.0)
                code = proc.exitcode
            codes[i] = code
            if code not in (-signal.SIGTERM, 128 + signal.SIGTERM):  # terminated by the pool
                culprits.append(i)
        if not culprits:
            culprits = sorted(running) or [fallback]
        i = culprits[0]
        code = codes.get(i)
        how = f"exit code {code}" if code is not None else "unknown exit code"
        cause = RuntimeError(
            f"the worker process running it died ({how}): a crash, os._exit, or the "
            "operating system killing it (out of memory?)"
        )
        others = [j for j in culprits if j != i]
        err = TaskFailedError.from_task(i, len(tasks), _describe(tasks[i]), cause)
        if others:
            err.add_note(f"tasks {others} were also running on workers that died")
        return err


# ---------------------------------------------------------------------------- ray
def _ray_call(fn: Callable[..., R], shared: Any, has_shared: bool, task: Any) -> R:
    return _apply(fn, shared, task, has_shared)


class RayExecutor(Executor):
    """Tasks on Ray: a local instance with ``workers`` CPUs, or a running cluster.

    Needs ``pip install "memberlab[ray]"``. If Ray is already initialised in this
    process (a notebook, a test session) it is used as it is and left running;
    otherwise :meth:`start` calls ``ray.init`` (``address=ray_address`` to join a
    cluster, else a local instance with ``num_cpus=workers``) and :meth:`close` shuts it
    down. Tasks run with one CPU each and are not retried (``max_retries=0``): a worker
    that dies fails the job with the task named.
    """

    name = "ray"

    def __init__(self, *, workers: int | None = None, ray_address: str | None = None) -> None:
        super().__init__(workers=workers)
        self.ray_address = ray_address
        self._owns = False
        self._remote: Any = None

    @staticmethod
    def _ray() -> Any:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DataValidationError(
                "executor == 'ray' needs Ray: pip install \"memberlab[ray]\"."
            ) from exc
        return ray

    def start(self) -> None:
        ray = self._ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if self.ray_address:
                kwargs["address"] = self.ray_address
            else:
                kwargs["num_cpus"] = _check_workers(self.workers)
            # workers must import the same memberlab as the driver
            src = str(Path(__file__).resolve().parents[2])
            path = os.environ.get("PYTHONPATH", "")
            if not self.ray_address and src not in path.split(os.pathsep):
                kwargs["runtime_env"] = {
                    "env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (src, path) if p)}
                }
            ray.init(**kwargs)
            self._owns = True
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)

    def close(self) -> None:
        if self._owns:
            self._ray().shutdown()
            self._owns = False
        self._remote = None

    def _run(
        self, fn: Callable[..., R], tasks: list[Any], shared: Any, progress: Progress | None
    ) -> list[R]:
        ray = self._ray()
        has_shared = shared is not None
        shared_ref = ray.put(shared) if has_shared else None
        n_cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        limit = max(n_cpus, 1) * _IN_FLIGHT_PER_WORKER
        total = len(tasks)
        results: list[Any] = [None] * total
        pending: dict[Any, int] = {}
        next_i = 0
        done = 0
        try:
            while done < total:
                while next_i < total and len(pending) < limit:
                    ref = self._remote.remote(fn, shared_ref, has_shared, tasks[next_i])
                    pending[ref] = next_i
                    next_i += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if not isinstance(cause, BaseException):
                            cause = exc.as_instanceof_cause()
                        raise TaskFailedError.from_task(
                            i, total, _describe(tasks[i]), cause
                        ) from exc
                    except ray.exceptions.RayError as exc:
                        # worker crashed, node lost, object lost...
                        raise TaskFailedError.from_task(i, total, _describe(tasks[i]), exc) from exc
                    done += 1
                    if progress is not None:
                        progress(done, total)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=False)  # queued ones; running ones finish
            raise
        return results

    def __repr__(self) -> str:
        return f"RayExecutor(workers={self.workers}, ray_address={self.ray_address!r})"


def get_executor(
    backend: str | Executor | None = "serial",
    *,
    workers: int | None = None,
    ray_address: str | None = None,
) -> Executor:
    """An executor by name.

    Parameters
    ----------
    backend : {"serial", "processes", "ray"}, Executor or None
        ``None`` means serial; an Executor is returned as it is.
    workers : int, optional
        Worker processes (processes), or CPUs of a local Ray instance (ray); default
        the machine's CPU count. Ignored by serial.
    ray_address : str, optional
        Address of a running Ray cluster (``ray://host:10001`` or ``host:6379``);
        ray only.

    Examples
    --------
    >>> from memberlab.jobs import get_executor
    >>> with get_executor("serial") as ex:
    ...     ex.map(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    if isinstance(backend, Executor):
        return backend
    if workers is not None:
        _check_workers(workers)
    if ray_address is not None and backend != "ray":
        raise DataValidationError(
            f"ray_address == {ray_address!r} needs executor == 'ray', got {backend!r}."
        )
    if backend is None or backend == "serial":
        return SerialExecutor(workers=1)
    if backend == "processes":
        return ProcessExecutor(workers=workers)
    if backend == "ray":
        return RayExecutor(workers=workers, ray_address=ray_address)
    raise DataValidationError(f"executor == {backend!r}, must be one of {', '.join(BACKENDS)}.")
