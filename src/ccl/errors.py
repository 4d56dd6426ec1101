"""The project's error types and the one way a command reports them.

Every error a user can cause (a bad value, a missing or damaged file, a run folder in the
way) is one of these or an ``OSError``/``ValueError``/``RuntimeError``; ``ccl`` prints it as one
line, ``ccl CMD: error: <where>: <cause>``, with :func:`describe_error`, and exits 2. This
module imports nothing heavy: the command line uses it before torch is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "AnnotationFormatError",
    "CheckpointError",
    "ClassMismatchError",
    "MediaError",
    "NonFiniteLossError",
    "ReportError",
    "RunExistsError",
    "RunInUseError",
    "SettingsMismatchError",
    "USER_ERRORS",
    "WeightsError",
    "describe_error",
]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used, with the file named."""


class ClassMismatchError(ValueError):
    """A checkpoint's classes are not the data's (other names, order or number)."""


class WeightsError(ValueError):
    """A weights or checkpoint file that exists but cannot be read, with the file named."""


class AnnotationFormatError(ValueError):
    """A split/annotation file has a malformed line; the message names file and line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


class MediaError(ValueError):
    """A file that is not a usable video (missing, a symlink loop, a still image, no frames);
    the message says what it is, the caller names the file."""


class SettingsMismatchError(ValueError):
    """Existing complete stores were made with other settings than those requested."""


class RunExistsError(RuntimeError):
    """A fresh start was asked for in a folder that already holds a run."""


class RunInUseError(RuntimeError):
    """A run folder another live process is writing (its lock is held); names that process."""


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or inf; the message names the step and every loss term."""


class ReportError(ValueError):
    """A run folder that cannot be reported on (missing folder or ``config.json``)."""


# What a command turns into one line and exit status 1 instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


def describe_error(err: BaseException) -> str:
    """One line for a user error: an ``OSError`` as "path: cause" (read-only folder, a file
    where a folder belongs, full disk), anything else as its message."""
    if isinstance(err, OSError) and err.filename is not None:
        cause = err.strerror or str(err)
        if isinstance(err, (FileExistsError, NotADirectoryError)) and os.path.isfile(
            err.filename
        ):
            cause = "a file where a folder is expected"
        where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 else "")
        return f"{where}: {cause}"
    return str(err) or type(err).__name__
