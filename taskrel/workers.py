"""Worker processes that die with their parent.

Grids and studies train runs in parallel in spawned processes (CUDA-safe).
On Linux each worker asks the kernel to send it SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), so killing ``taskrel grid --workers 2`` stops
its workers too instead of leaving them training a cell that the next run
would train again. Elsewhere the run-folder lock still keeps two processes
from writing one run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> bool:
    """Ask for SIGTERM when the parent process dies (Linux); True if the request is in place."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    if parent is not None and os.getppid() != parent:  # the parent died before the request: go now
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes that end when this process ends."""
    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
    )
