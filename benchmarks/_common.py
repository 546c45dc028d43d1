"""Helpers shared by the benchmark scripts: machine and version banner, timing, memory.

Import from a script in this folder with ``from _common import ...`` (the scripts put
their own folder on ``sys.path`` when run as files).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Timing",
    "machine_lines",
    "mean_se",
    "peak_traced_mib",
    "print_banner",
    "rss_peak_mib",
    "single_thread_blas",
    "time_per_call",
    "versions",
]


def single_thread_blas() -> None:
    """Ask BLAS libraries for one thread (call before numpy is imported to be certain)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions (``"absent"`` when not installed)."""
    out = {}
    for p in packages:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def machine_lines(packages: Sequence[str] = ("memberlab", "numpy", "scipy")) -> list[str]:
    """Machine, CPU, Python and library versions, one fact per line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [
        f"machine: {platform.system()} {platform.release()} {platform.machine()}",
        f"cpu: {cpu} ({os.cpu_count()} logical cores visible)",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"BLAS threads: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
    ]
    lines += [f"{k}: {v}" for k, v in versions(packages).items()]
    return lines


def print_banner(title: str, packages: Sequence[str] = ("memberlab", "numpy", "scipy")) -> None:
    print(f"== {title} ==")
    for line in machine_lines(packages):
        print("  " + line)


@dataclass(frozen=True, slots=True)
class Timing:
    """Best-of-repeats time of one call."""

    seconds_per_call: float
    calls: int

    @property
    def per_second(self) -> float:
        return 1.0 / self.seconds_per_call

    @property
    def micros(self) -> float:
        return self.seconds_per_call * 1e6


def time_per_call(
    fn: Callable[[], object],
    *,
    min_time: float = 0.3,
    repeats: int = 5,
    per_call: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``fn`` (best of ``repeats`` runs of at least ``min_time`` seconds each).

    ``per_call`` divides the time when one call does several operations (batches).
    ``clock=time.process_time`` counts this process's CPU time only: on a loaded
    machine, time spent descheduled then inflates neither side of a ratio.
    """
    fn()  # warm caches
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        dt = clock() - t0
        if dt >= min_time / 4 or n >= 1 << 24:
            break
        n *= 4
    n = max(1, int(n * min_time / max(dt, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - t0) / n)
    return Timing(best / per_call, n * per_call)


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error (0 for fewer than two values)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2:
        return float(a.mean()) if a.size else float("nan"), 0.0
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size))


def peak_traced_mib(fn: Callable[[], object]) -> float:
    """Peak Python-heap allocation (tracemalloc, includes numpy buffers) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def rss_peak_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20
