"""Messages of long work: the ``taskrel`` logger, the command line's ``-v``/``-q``, and each run's ``train.log``.

Every function that works for long takes ``log`` (a callable of one message);
its default, ``say``, is an INFO message of ``logging.getLogger("taskrel")``,
which a library user configures as any logger and the command line sends to
stderr (``-q``: warnings only; ``-v``: debug too). Results a command prints
(tables, paths) go to stdout. Progress bars are separate (``--no-progress``).
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOGGER = logging.getLogger("taskrel")
RUN_LOG = "train.log"


def say(message: str) -> None:
    LOGGER.info(message)


def configure(verbosity: int = 0) -> None:
    """Send the ``taskrel`` logger to stderr: ``verbosity`` -1 warnings only, 0 progress messages, 1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.taskrel_cli = True
    LOGGER.handlers = [h for h in LOGGER.handlers if not getattr(h, "taskrel_cli", False)] + [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False


@contextmanager
def run_log(folder, log):
    """``log``, also appending every message, time-stamped, to ``folder/train.log`` (kept across resumes)."""
    with open(Path(folder) / RUN_LOG, "a", encoding="utf-8") as f:

        def both(message: str) -> None:
            f.write(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S} {message}\n")
            f.flush()
            log(message)

        yield both
