"""Run a function in a worker process that is killed when it overruns: a bound no thread can escape.

Why a process: verl calls reward functions from a thread pool, where math-verify's ``signal.alarm`` timeouts cannot
work, and some answers (``9^{9^{9^{9}}}``, a huge factorial) send sympy into C-level big-integer arithmetic that holds
the GIL, so no watchdog thread could even run. A worker process runs the call in its own main thread (math-verify's
own timeouts work there) and pebble kills and replaces the worker when the hard deadline passes anyway.

One pool per process, created on first use (and again in a forked child, which must not share its parent's pipes);
workers are spawned, never forked, since verl's reward workers are multi-threaded Ray actors.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Optional, TypeVar

from pebble import ProcessPool

T = TypeVar("T")

WORKERS_ENV = "RPO_REWARD_WORKERS"
"""Worker processes per scoring process; default ``min(4, cpu count)``."""


class DeadlineExceeded(TimeoutError):
    """The call ran past its deadline; its worker was killed."""


_lock = threading.Lock()
_pool: Optional[ProcessPool] = None
_pool_pid: Optional[int] = None


def _worker_count() -> int:
    value = os.environ.get(WORKERS_ENV, "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a whole number >= 1, got {value!r}")
        return int(value)
    return max(1, min(4, os.cpu_count() or 1))


def _shared_pool() -> ProcessPool:
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid() or not _pool.active:
            _pool = ProcessPool(max_workers=_worker_count(), context=multiprocessing.get_context("spawn"))
            _pool_pid = os.getpid()
        return _pool


def run_bounded(function: Callable[..., T], *args: object, deadline_s: float) -> T:
    """``function(*args)`` in a worker process, at most ``deadline_s`` seconds of its run time.

    ``function`` and its arguments must pickle (a module-level function). The clock starts when a worker picks the
    call up, so a queue behind busy workers does not count against it.

    Raises:
        DeadlineExceeded: the call overran; the worker was killed and will be replaced.
        Exception: whatever ``function`` raised."""
    future = _shared_pool().submit(function, deadline_s, *args)
    try:
        return future.result()
    except FutureTimeout as error:
        raise DeadlineExceeded(f"{getattr(function, '__name__', function)} ran past {deadline_s} s") from error


@atexit.register
def _close_pool() -> None:
    if _pool is not None and _pool_pid == os.getpid():
        _pool.stop()
        _pool.join()
