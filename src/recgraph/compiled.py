"""How every compiled kernel of the package is built (:func:`kernel`), and the helper kernels
of several modules share (:func:`pairwise_sum`).

Only kernel modules import this, and they are imported inside the functions that run
them (never at a module's top level), so importing the package, its CLI, jobs or a
server that answers no ranked request does not load numba (0.3-2.4 s a process).

numba's on-disk cache stamps an entry with the decorated function's own file only,
while a kernel calling :func:`pairwise_sum` holds a compiled copy of it; so a
:func:`kernel`'s entry also carries this file's digest (:class:`_StampedWithThisFile`):
after a change here every kernel compiles again, once, instead of running stale code.
"""

from __future__ import annotations

import hashlib
import os

from numba import njit
from numba.core.caching import CacheImpl

_THIS_FILE = os.path.abspath(__file__)
#: the Python functions compiled through :func:`kernel` (the ones the stamp is for)
_KERNELS: set = set()


def _this_files_digest() -> bytes:
    """This file's sha256 (read once a process: an installed file does not change under it)."""
    global _DIGEST
    if _DIGEST is None:
        with open(_THIS_FILE, "rb") as source:
            _DIGEST = hashlib.sha256(source.read()).digest()
    return _DIGEST


_DIGEST: bytes | None = None


class _StampedWithThisFile:
    """Mixed into each of numba's cache locators, for :func:`kernel`'s functions only: the
    source stamp is the function's file's and this file's digest."""

    def get_source_stamp(self):
        return (super().get_source_stamp(), _this_files_digest())

    @classmethod
    def from_function(cls, py_func, py_file):
        if py_func not in _KERNELS:
            return None  # every other function: numba's own locators, unchanged
        return super().from_function(py_func, py_file)


# numba asks its locators in order: ours (one per locator it has) first
CacheImpl._locator_classes[:0] = [
    type(f"KernelStamped{base.__name__}", (_StampedWithThisFile, base), {})
    for base in CacheImpl._locator_classes
]


def kernel(function):
    """``function`` compiled as every kernel is: ``njit(cache=True, nogil=True)`` (cached on
    disk, so server workers reuse it; the GIL released while it runs), or
    ``njit(nogil=True)`` when numba finds no writable cache location for its file (it
    raises ``RuntimeError`` at decoration then), so the package imports from a read-only
    install."""
    _KERNELS.add(function)
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:
        return njit(nogil=True)(function)


@kernel
def pairwise_sum(values):
    """``values.sum()`` as numpy adds a contiguous array, in ``values``' own dtype (float32
    partial sums for float32): one by one from ``-0.0`` below 8 entries; up to 128, eight
    running sums over blocks of 8, paired, then the tail; above, the two halves (split at a
    multiple of 8)."""
    n = len(values)
    if n < 8:
        total = values.dtype.type(-0.0)
        for i in range(n):
            total += values[i]
        return total
    if n <= 128:
        r0, r1, r2, r3 = values[0], values[1], values[2], values[3]
        r4, r5, r6, r7 = values[4], values[5], values[6], values[7]
        i = 8
        while i < n - (n % 8):
            r0 += values[i]
            r1 += values[i + 1]
            r2 += values[i + 2]
            r3 += values[i + 3]
            r4 += values[i + 4]
            r5 += values[i + 5]
            r6 += values[i + 6]
            r7 += values[i + 7]
            i += 8
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            total += values[i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return pairwise_sum(values[:half]) + pairwise_sum(values[half:])
