"""How every compiled kernel of the package is built (:func:`kernel`), and the helper kernels
of several modules share (:func:`pairwise_sum`).

Only kernel modules import this (numba with it); the ranking's, the merge's and
EASE/item-kNN's are imported inside the functions that run them, so importing the
pipeline, the CLI, jobs or a server that answers no ranked request does not load numba
(0.3-2.4 s a process).

numba's on-disk cache stamps an entry with the decorated function's own file only,
while a kernel calling :func:`pairwise_sum` holds a compiled copy of it; so a
:func:`kernel`'s entry also carries this file's digest (:class:`_StampedWithThisFile`,
taken at import: the source this process compiles from): after a change here every
kernel compiles again, once, instead of running stale code. Where numba's locators
cannot be stamped (another numba's internals, ``NUMBA_CACHE_LOCATOR_CLASSES`` set)
the kernels are compiled uncached in each process.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from numba import config, njit

#: this file's sha256 as it was imported (every kernel's cache stamp carries it)
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest().encode()
#: the Python functions compiled through :func:`kernel` (the ones the stamp is for)
_KERNELS: set = set()


class _StampedWithThisFile:
    """Mixed into each of numba's cache locators: for :func:`kernel`'s functions the source
    stamp is the function's file's and :data:`SOURCE_DIGEST`; for every other function the
    locator is numba's own, unchanged."""

    #: marks the classes made here, so that a second import replaces none
    kernel_stamped = True
    _kernel = False

    def get_source_stamp(self):
        stamp = super().get_source_stamp()
        return (stamp, SOURCE_DIGEST) if self._kernel else stamp

    @classmethod
    def from_function(cls, py_func, py_file):
        locator = super().from_function(py_func, py_file)
        if locator is not None:
            locator._kernel = py_func in _KERNELS
        return locator


def patch_locators(mixin: type, prefix: str, marker: str, *, in_place: bool) -> bool:
    """Each of numba's cache locator classes subclassed with ``mixin`` (named ``prefix`` +
    its name), once a process (a class with attribute ``marker`` already in the list: done):
    in place of the originals, or put first in the list (numba asks them in order).
    ``False`` where that cannot be done safely: numba's internals are not as expected, or
    ``NUMBA_CACHE_LOCATOR_CLASSES`` overrides the list."""
    if getattr(config, "CACHE_LOCATOR_CLASSES", "") or os.environ.get(
        "NUMBA_CACHE_LOCATOR_CLASSES"
    ):
        return False
    try:
        from numba.core.caching import CacheImpl

        locators = CacheImpl._locator_classes
        if any(getattr(base, marker, False) for base in locators):
            return True
        stamped = [type(f"{prefix}{base.__name__}", (mixin, base), {}) for base in locators]
        locators[: len(locators) if in_place else 0] = stamped
    except (ImportError, AttributeError, TypeError):
        return False
    return True


#: whether kernels are cached on disk (with :data:`SOURCE_DIGEST` in their stamp)
CACHED = patch_locators(_StampedWithThisFile, "KernelStamped", "kernel_stamped", in_place=True)


def kernel(function):
    """``function`` compiled as every kernel is: ``njit(cache=True, nogil=True)`` (cached on
    disk, so server workers reuse it; the GIL released while it runs), or
    ``njit(nogil=True)`` when numba finds no writable cache location for its file (it
    raises ``RuntimeError`` at decoration then), so the package imports from a read-only
    install; uncached too where the stamp could not be added (:data:`CACHED`)."""
    if not CACHED:
        return njit(nogil=True)(function)
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
