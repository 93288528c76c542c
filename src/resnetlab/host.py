"""The host process: keep glibc's malloc from handing activation memory back to the kernel.

A ResNet allocates and frees the same few large tensors (activations of 1-100 MB) on every
step. glibc serves blocks above its mmap threshold (at most 32 MiB) with a fresh mmap and trims
freed heap memory back to the kernel, so each step pays page faults on memory it used a moment
before: on the project's CPU a ResNet-50 batch-16 benchmark spent 52 of its 225 CPU seconds in
the kernel, and timm eager ran at 13.4 img/s instead of 21.3 (docs/benchmarks.md). Keeping
freed memory in the process, as PyTorch's CUDA caching allocator does on a GPU, removes that
cost; the price is that the process's resident memory stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

OPT_OUT = "RESNETLAB_DEFAULT_MALLOC"  # set to 1 to leave malloc as it is

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve every block from its heap (no per-block mmap) and never to
    trim freed memory back to the kernel. Returns whether that is in force: False where the C
    library is not glibc (macOS, Windows, musl), or where $RESNETLAB_DEFAULT_MALLOC=1.

    Safe to call more than once; the command line calls it at start, the benchmarks too."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it (musl has a mallopt that does nothing)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # the largest int: trimming would need a free block at the top of the heap this large
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
