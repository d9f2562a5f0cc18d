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
