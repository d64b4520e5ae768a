"""The package's kernel settings and shared kernel helper (recgraph.compiled)."""

import numpy as np
import pytest

from recgraph.compiled import pairwise_sum


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_one_pairwise_sum_is_numpys_in_the_arrays_own_dtype(dtype):
    rng = np.random.default_rng(4)
    for n in [0, 1, 5, 7, 8, 9, 15, 16, 127, 128, 129, 300, 1000, 4097]:
        values = (rng.random(n) * 10.0 ** rng.integers(-9, 3, n)).astype(dtype)
        got = np.asarray(pairwise_sum(values), dtype)
        if n:
            assert got.tobytes() == values.sum().tobytes()
        else:  # numpy's pairwise loop starts from -0.0 (the empty .sum() is +0.0)
            assert got == 0 and np.signbit(got)


def test_a_kernels_cache_entry_goes_stale_with_this_module(monkeypatch) -> None:
    """A kernel holds a compiled copy of pairwise_sum (numba stamps an entry with the
    kernel's own file only): every kernel's stamp carries compiled.py's digest too."""
    from numba.core.caching import FunctionCache

    from recgraph import compiled
    from recgraph.ranking import history_kernels

    history_kernels.warm_up()  # compiled, or read from the cache, and saved there
    kernel = history_kernels.history_reductions
    signature, context = kernel.signatures[0], kernel.targetctx
    stamp = FunctionCache(kernel.py_func)._impl.locator.get_source_stamp()
    assert compiled.CACHED and stamp[1] == compiled.SOURCE_DIGEST
    assert FunctionCache(kernel.py_func).load_overload(signature, context) is not None
    monkeypatch.setattr(compiled, "SOURCE_DIGEST", b"compiled.py changed")
    assert FunctionCache(kernel.py_func).load_overload(signature, context) is None


def test_the_locators_are_replaced_in_place_once_a_process() -> None:
    """numba's list keeps its length and order (every other function's locator unchanged);
    ``importlib.reload`` replaces nothing again."""
    import subprocess
    import sys

    script = """
import importlib
from numba.core.caching import CacheImpl
before = [c.__name__ for c in CacheImpl._locator_classes]
from recgraph import compiled
once = [c.__name__ for c in CacheImpl._locator_classes]
importlib.reload(compiled)
again = [c.__name__ for c in CacheImpl._locator_classes]
assert once == ["KernelStamped" + name for name in before] and again == once, (before, again)
print(compiled.CACHED)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
