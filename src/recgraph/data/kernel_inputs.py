"""What the compiled sparse-row kernels take, in numpy alone: importing it loads no numba.

:mod:`~recgraph.data.row_kernels` compiles on import (numba, 0.3-2 s a process), so the
modules that call it (:mod:`~recgraph.data.sparse_rows`, the two-hop retrievers) check
their inputs here and import the kernels only when a request is about to use them.
"""

from __future__ import annotations

import numpy as np

#: Data dtypes the kernels take (the user's and the items' the same); numpy's reads otherwise.
KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: Index dtypes the kernels are warmed up for (scipy's CSR index arrays).
KERNEL_INDICES = (np.dtype(np.int32), np.dtype(np.int64))


def frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (one compiled version, whatever the array's origin)."""
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array
