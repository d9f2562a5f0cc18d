"""Exclusive locks on run folders: one process writes a run at a time.

``RunLock(folder)`` takes an advisory ``flock`` on ``folder/.lock`` without
waiting; a second process (or a second open in the same process) gets
:class:`RunLocked`. The kernel drops the lock when its holder exits, killed or
not, so a crash never leaves a folder locked. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .config import ConfigError

LOCK_FILE = ".lock"


class RunLocked(ConfigError):
    pass


class RunLock:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise RunLocked(
                f"{self.folder}: another process is writing this run folder (it holds {self.path}); "
                "wait for it to finish, or choose another --out"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def is_locked(folder) -> bool:
    """Whether a live process holds ``folder``'s lock now (a lock file left by a dead one does not count)."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this call took
    return False
