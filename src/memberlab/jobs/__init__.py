"""Offline jobs on one executor interface: serial (default), local processes, or Ray.

>>> from memberlab.jobs import get_executor, task_seeds
>>> with get_executor("serial") as ex:
...     ex.map(abs, [-2, 1])
[2, 1]
"""

from memberlab._errors import TaskFailedError
from memberlab.jobs._executor import (
    BACKENDS,
    Executor,
    ProcessExecutor,
    Progress,
    RayExecutor,
    SerialExecutor,
    get_executor,
    task_seeds,
)

__all__ = [
    "BACKENDS",
    "Executor",
    "ProcessExecutor",
    "Progress",
    "RayExecutor",
    "SerialExecutor",
    "TaskFailedError",
    "get_executor",
    "task_seeds",
]
