"""The one base class of the errors taskrel reports to its users.

``cli.main`` turns a ``TaskrelError`` into ``taskrel: error: ...`` and exit
status 2, without a traceback: bad settings (``ConfigError``), bad corpora
(``CorpusError``), bad task names (``TaskError``), a busy run folder, an
unavailable device or encoder. Anything else is a bug and keeps its traceback.
"""


class TaskrelError(ValueError):
    """A problem with what the user asked for or gave: the message says what, and where."""


class TaskError(TaskrelError):
    """An unknown or repeated task name, or a bad task option."""
