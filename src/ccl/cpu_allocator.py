"""glibc's malloc, tuned to keep freed memory for CPU training and evaluation.

By default glibc serves every block over its mmap threshold (128 KiB, rising to at most
32 MiB as big blocks are freed) with a fresh ``mmap`` and unmaps it on ``free``, and it
returns the free top of the heap to the kernel past 128 KiB. A training step allocates and
frees gigabytes of activations and gradients, so each step maps new memory and the kernel
zero-fills it page by page: millions of minor page faults per step, about a third of the
step's CPU time on a 2-core machine. Serving every block from the heap and never trimming
it lets the next step reuse the pages the last one freed. The process keeps its peak heap
(about the peak working set, which it needs again at the next step anyway).

``mallopt`` changes these settings at run time, in the running process; the ``MALLOC_*``
environment variables would need a restart, and another allocator (jemalloc, tcmalloc)
would have to be preloaded before Python starts. ``CCL_SYSTEM_MALLOC=1`` opts out.
"""

from __future__ import annotations

import ctypes
import os

OPT_OUT_ENV = "CCL_SYSTEM_MALLOC"

# mallopt parameters (<malloc.h>)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

# (parameter, value): no block gets its own mmap (served from the heap, reused after free),
# trimming disabled (-1: freed memory stays in the process), the heap grows 64 MiB at a time.
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1), (M_TOP_PAD, 64 << 20))

_applied = False


def opted_out() -> bool:
    """``CCL_SYSTEM_MALLOC`` set to anything but empty or 0 keeps the system's settings."""
    return os.environ.get(OPT_OUT_ENV, "") not in ("", "0")


def is_applied() -> bool:
    """Whether :func:`configure_cpu_allocator` put the settings in force in this process."""
    return _applied


def configure_cpu_allocator() -> bool:
    """Apply :data:`SETTINGS` with glibc's ``mallopt`` once per process; returns whether
    they are in force. A no-op (False) when opted out or where the C library is not glibc."""
    global _applied
    if _applied:
        return True
    if opted_out():
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (not musl, not macOS)
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; a refused value leaves that setting as it was
    _applied = all([mallopt(param, value) == 1 for param, value in SETTINGS])
    return _applied
