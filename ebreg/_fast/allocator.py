"""Keep freed memory in the process's heap, so that the large tensors of each training step or
prediction chunk reuse pages instead of mapping fresh ones from the operating system.

glibc's malloc serves blocks above a (dynamic) threshold with ``mmap`` and returns freed heap
memory above another to the system. A training step of the reference toy model frees and
reallocates tensors of a megabyte or more; with glibc's defaults each step at batch 64
faults in about a thousand fresh pages (``tests/test_allocator.py`` counts them; kept, under
a hundred). :func:`keep_freed_memory` raises both thresholds once per
process (``mallopt``); peak memory is unchanged (the same tensors are alive), memory freed at
the end stays with the process for its next use. Nothing happens on other C libraries.

This changes the whole process (every library's allocations in it), so training and
prediction do it only when the flag ``keep_freed_memory`` is on (:func:`keep_freed_memory_if_enabled`):
off by default; ``EBREG_KEEP_MALLOC=1`` or ``ebreg.set_fast_paths(keep_freed_memory=True)``
turns it on, and the command line does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from . import current

__all__ = ["keep_freed_memory", "keep_freed_memory_if_enabled", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: blocks below this come from the heap (glibc's largest allowed value on 64-bit systems)
MMAP_THRESHOLD = 32 << 20
#: free memory at the top of the heap is returned to the system only above this
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are set."""
    global _done
    if _done:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def keep_freed_memory_if_enabled() -> bool:
    """:func:`keep_freed_memory` when the flag ``keep_freed_memory`` is on; True when set."""
    return keep_freed_memory() if current().keep_freed_memory else _done
