"""The process-wide measurement lock: one timing at a time in a process.

torch's thread count is process-wide (``torch.set_num_threads``), and two timings running at
once in one process (UI handlers, API jobs, notebook threads) would also slow each other down.
Every timing and every temporary change of torch's thread count holds this lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

_LOCK = threading.RLock()  # re-entrant: a measurement pins threads inside its own timing


def _fresh_lock_in_child() -> None:
    """A forked job starts with a free lock (the thread that held it does not exist there)."""
    global _LOCK
    _LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


@contextlib.contextmanager
def measurement_lock() -> Iterator[None]:
    """Hold the process-wide measurement lock (re-entrant in one thread)."""
    with _LOCK:
        yield


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch with ``threads`` threads under the measurement lock, then restore the count."""
    import torch

    with _LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)
