"""Worker processes that die with the process that started them.

A pool worker whose parent is killed (SIGKILL, SIGTERM, a crash) would otherwise live on as
an orphan (parent PID 1): it finishes its job and waits for more forever. :func:`die_with_parent`
is the pools' worker initializer (``ccl prepare videos``'s and the demo's job pool).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5  # how often the parent-watching thread looks (not Linux)


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process ``parent_pid`` that started it
    dies, instead of leaving an orphan waiting for jobs forever. Linux: the kernel sends
    SIGKILL (``PR_SET_PDEATHSIG``; it fires when the thread that started the worker ends, so
    start pools from a thread that outlives them, as the main thread does); other POSIX
    systems: a daemon thread polls the parent id. Windows ends pool workers through their
    broken pipes to the parent."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.name != "posix":
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="ccl-watch-parent", daemon=True).start()


__all__ = ["PR_SET_PDEATHSIG", "die_with_parent"]
