"""One error hierarchy for everything a user can get wrong.

Each class also inherits the matching built-in, so callers that catch
``FileNotFoundError`` or ``ValueError`` keep working. Messages are one sentence
that names the thing and says what to do.
"""

from __future__ import annotations


class HenshinError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class InputNotFoundError(HenshinError, FileNotFoundError):
    """An input file, folder, camera or model is missing."""


class BadInputError(HenshinError, ValueError):
    """An input exists but cannot be used (corrupt, no video stream, wrong checkpoint)."""


class OutputError(HenshinError, OSError):
    """An output cannot be written where asked."""


class OptionError(HenshinError, ValueError):
    """An unknown filter, parameter or option value."""


class ModelError(HenshinError, RuntimeError):
    """A model is missing, fails its checks or cannot be loaded safely."""


class RuntimeUnavailableError(HenshinError, RuntimeError):
    """A requested runtime or device is not installed or not present."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so the run stops the way Ctrl-C stops it.

    A KeyboardInterrupt, so every place that cleans up after Ctrl-C cleans up
    after these too; ``signum`` gives the exit code (128 + signal).
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum, self.name = signum, name
