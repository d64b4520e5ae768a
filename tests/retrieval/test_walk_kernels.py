"""The compiled walk kernels against their numpy definitions."""

import numpy as np
import pytest

from recgraph.data.graph_csr import GraphCSR
from recgraph.data.graph_overlay import GraphOverlay
from recgraph.retrieval import pixie_kernels
from recgraph.retrieval import walk_kernels as kernels
from recgraph.retrieval.walks import WalkGraph
from tests.retrieval.test_neighborhood import random_graph


def walk_graph(n: int, density: float, seed: int, cap: int, extra: int = 0) -> WalkGraph:
    graph = GraphCSR.from_csr(random_graph(n, density, seed=seed, directed=True).csr("binary"))
    overlay = GraphOverlay()
    if extra:
        rng = np.random.default_rng(seed)
        overlay.add(rng.integers(0, n, extra), rng.integers(0, n, extra))
    return WalkGraph(graph, overlay, cap)


def test_pairwise_sum_is_numpys_sum_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    for n in [0, 1, 5, 7, 8, 9, 15, 16, 127, 128, 129, 300, 1000, 4097]:
        values = rng.random(n) * 10.0 ** rng.integers(-9, 3, n)
        assert kernels.pairwise_sum(values) == values.sum()


def test_best_first_is_lexsort_by_value_then_key() -> None:
    rng = np.random.default_rng(2)
    for trial in range(60):
        n = int(rng.integers(0, 200))
        values = rng.integers(0, 12, n).astype(np.float64)  # many ties
        if trial % 5 == 0 and n:
            values[rng.integers(0, n, 3)] = np.nan
        keys = rng.permutation(10 * n + 1)[:n].astype(np.int64)
        want = np.lexsort((keys, -values))
        for count in (-1, 0, 1, 10, n, n + 3):
            got = kernels.best_first(values, keys, count)
            np.testing.assert_array_equal(got, want if count < 0 else want[:count])


def test_best_first_orders_tied_nans_by_key_as_lexsort_does() -> None:
    rng = np.random.default_rng(5)
    for n in (2, 5, 12, 40):
        values = np.full(n, np.nan)
        values[rng.permutation(n)[: n // 3]] = rng.integers(0, 3, n // 3)
        keys = rng.permutation(n).astype(np.int64)
        want = np.lexsort((keys, -values))
        for count in range(1, n):  # the top-count path: NaNs arrive in key disorder
            np.testing.assert_array_equal(kernels.best_first(values, keys, count), want[:count])


def test_every_kernel_is_cached_and_pixies_go_stale_with_walk_kernels(
    monkeypatch, tmp_path
) -> None:
    """Every kernel is cached on disk; a Pixie kernel's entry carries walk_kernels.py's digest
    (its compiled code holds copies of the walk_kernels functions it calls, and numba stamps
    an entry with the caller's file only): with another digest the cached entry is stale."""
    import hashlib
    import importlib.util
    from pathlib import Path

    import numba
    from numba.core.caching import FunctionCache, NullCache
    from numba.core.registry import CPUDispatcher

    def dispatchers(module) -> list:
        return [f for f in vars(module).values() if isinstance(f, CPUDispatcher)]

    own = [f for f in dispatchers(pixie_kernels) if f.py_func.__module__ == pixie_kernels.__name__]
    assert len(own) >= 5
    walk = dispatchers(kernels)
    assert len(walk) >= 20
    if any(isinstance(f._cache, NullCache) for f in walk):
        pytest.skip("numba found no writable cache location here (set NUMBA_CACHE_DIR)")
    if not pixie_kernels.CACHED:
        pytest.skip("NUMBA_CACHE_LOCATOR_CLASSES is set: Pixie's kernels are not cached")
    assert not any(isinstance(f._cache, NullCache) for f in own)
    # the digest is walk_kernels' source as imported (unchanged on disk during the test)
    source = Path(kernels.__file__).read_bytes()
    assert kernels.SOURCE_DIGEST == hashlib.sha256(source).hexdigest()
    assert pixie_kernels.callees_digest() == kernels.SOURCE_DIGEST.encode()
    pixie_kernels.warm_up()  # compiled, or read from the cache, and saved there
    combine = pixie_kernels.pixie_combine
    signature, context = combine.signatures[0], combine.targetctx
    locator = FunctionCache(combine.py_func)._impl.locator
    assert type(locator).__name__.startswith("CalleesStamped")
    assert locator.get_source_stamp()[1] == pixie_kernels.callees_digest()
    assert FunctionCache(combine.py_func).load_overload(signature, context) is not None
    monkeypatch.setattr(pixie_kernels, "callees_digest", lambda: b"walk_kernels.py changed")
    assert FunctionCache(combine.py_func).load_overload(signature, context) is None
    # any other function decorated after the import keeps numba's own locators
    (tmp_path / "elsewhere.py").write_text("def twice(x):\n    return 2 * x\n")
    spec = importlib.util.spec_from_file_location("elsewhere", tmp_path / "elsewhere.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    other = numba.njit(cache=True)(module.twice)
    assert other(21) == 42
    assert not type(other._cache._impl.locator).__name__.startswith("CalleesStamped")


def _run(script: str, **env: str) -> str:
    """``script`` in a fresh interpreter (numba's locator list is process-wide); its stdout."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_kernels_compile_uncached_where_no_cache_location_is_writable() -> None:
    """With every cache locator refusing (a read-only install), ``cache=True`` raises at
    decoration; the kernels, Pixie's too, fall back to compiling per process and still run."""
    script = """
import numba
from numba.core import caching
caching.CacheImpl._locator_classes = []
try:
    numba.njit(cache=True)(lambda x: x)
    print("decorated")
except RuntimeError:
    print("refused")
from recgraph.retrieval import pixie_kernels, walk_kernels
assert isinstance(walk_kernels.pairwise_sum._cache, caching.NullCache)
assert isinstance(pixie_kernels.pixie_combine._cache, caching.NullCache)
assert isinstance(pixie_kernels.pixie_walk._cache, caching.NullCache)
pixie_kernels.warm_up()
print(walk_kernels.pairwise_sum(__import__("numpy").arange(10.0)))
"""
    assert _run(script).split() == ["refused", "45.0"]


def test_pixies_stamped_locators_are_added_once_a_process() -> None:
    """``importlib.reload`` finds the callees-stamped locators in numba's list and adds none."""
    script = """
import importlib
from numba.core.caching import CacheImpl
before = len(CacheImpl._locator_classes)
from recgraph.retrieval import pixie_kernels
once = len(CacheImpl._locator_classes)
importlib.reload(pixie_kernels)
print(before, once, len(CacheImpl._locator_classes), pixie_kernels.CACHED)
"""
    before, once, again, cached = _run(script).split()
    assert int(once) == 2 * int(before) and again == once and cached == "True"


@pytest.mark.parametrize("how", ["locator_override", "numba_internals_changed"])
def test_pixies_kernels_are_uncached_where_the_locators_cannot_be_stamped(how: str) -> None:
    """With ``NUMBA_CACHE_LOCATOR_CLASSES`` set, or numba's ``CacheImpl`` not as expected,
    Pixie's kernels compile per process (no entry a changed walk_kernels.py leaves stale)."""
    override = {"NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
    env = override if how == "locator_override" else {}
    script = "from numba.core import caching\n"
    if how == "numba_internals_changed":
        script += 'caching.CacheImpl = type("CacheImpl", (), {})  # no _locator_classes\n'
    script += """
from recgraph.retrieval import pixie_kernels
assert not pixie_kernels.CACHED
assert isinstance(pixie_kernels.pixie_combine._cache, caching.NullCache)
pixie_kernels.warm_up()
print("ran")
"""
    assert _run(script, **env).split() == ["ran"]


@pytest.mark.parametrize("cap", [0, 1, 3, 1000])
def test_the_kernels_gather_is_the_walk_graphs_either_way_distinct(cap: int) -> None:
    """One side: the sampled trained row then the overlay's, as WalkGraph.gather gives them;
    either way: their union, each neighbour once."""
    walk = walk_graph(70, 0.1, seed=cap, cap=cap, extra=40)
    graph = walk.kernel_graph()
    nodes = np.r_[np.random.default_rng(cap).integers(0, 70, 25), 5, 5].astype(np.int64)
    flags = np.zeros(70, np.uint8)
    for mode, side in ((kernels.OUT, "out"), (kernels.IN, "in")):
        owner, neighbour = kernels.gather(graph, nodes, mode, cap, flags)
        for i, node in enumerate(nodes.tolist()):
            want = np.r_[walk.trained_neighbours(np.array([node]), side, cap)[1],
                         walk.overlay.gather(np.array([node]), side)[1]]  # fmt: skip
            np.testing.assert_array_equal(neighbour[owner == i], want)
            assert kernels.degree(graph, node, mode, cap) == len(want)
    owner, neighbour = kernels.gather(graph, nodes, kernels.BOTH, cap, flags)
    for i, node in enumerate(nodes.tolist()):
        both = np.r_[
            walk.gather(np.array([node]), "out")[1], walk.gather(np.array([node]), "in")[1]
        ]
        got = neighbour[owner == i]
        assert len(got) == len(set(got.tolist()))
        assert set(got.tolist()) == set(both.tolist())
    assert not flags.any(), "the flags are handed back clear"


def test_a_random_neighbour_is_the_drawn_edge_then_the_overlays_or_minus_one() -> None:
    walk = walk_graph(60, 0.05, seed=9, cap=0)
    rng = np.random.default_rng(9)
    nodes = rng.integers(0, 60, 500)
    draws = np.r_[rng.random(499), np.nextafter(1.0, 0.0)]
    for mode, side in ((kernels.OUT, "out"), (kernels.IN, "in")):
        graph = walk.kernel_graph()
        indptr, indices = walk.csr.arrays(side)
        degree = np.diff(indptr)[nodes]
        assert (degree == 0).any(), "some rows are empty"
        picked = [
            pixie_kernels.random_neighbour(graph, int(v), mode, float(d))
            for v, d in zip(nodes, draws, strict=True)
        ]
        want = np.full(len(nodes), -1)
        has = degree > 0
        at = indptr[nodes[has]] + np.minimum(
            (draws[has] * degree[has]).astype(int), degree[has] - 1
        )
        want[has] = indices[at]
        np.testing.assert_array_equal(picked, want)
    walk.overlay.add(nodes[:1], [int(nodes[1])])
    last = pixie_kernels.random_neighbour(
        walk.kernel_graph(), int(nodes[0]), kernels.OUT, np.nextafter(1.0, 0.0)
    )
    assert last == nodes[1], "the last draw picks the overlay's edge after the row"


def test_pixie_walks_are_the_same_for_a_seed_and_differ_across_seeds() -> None:
    walk = walk_graph(80, 0.08, seed=3, cap=0)
    graph = walk.kernel_graph()
    items = np.array([1, 2, 3], np.int64)
    budget, width = np.array([300, 200, 100], np.int64), np.array([30, 20, 10], np.int64)

    def run(seed: int, user: int) -> tuple[np.ndarray, np.ndarray]:
        return pixie_kernels.pixie_walk(graph, items, budget, width, 0.5, seed, user, 4.0, 0,
                                  np.zeros(0), np.zeros(0, np.uint8))  # fmt: skip

    keys, counts = run(0, 7)
    again = run(0, 7)
    np.testing.assert_array_equal(keys, again[0])
    np.testing.assert_array_equal(counts, again[1])
    assert (np.diff(keys) > 0).all() and counts.sum() <= budget.sum()
    assert not np.array_equal(keys, run(1, 7)[0]) or not np.array_equal(counts, run(1, 7)[1])
    assert not np.array_equal(counts, run(0, 8)[1]) or not np.array_equal(keys, run(0, 8)[0])


def test_warm_up_runs_every_kernel_once_and_a_loaded_model_warms_up(tmp_path, monkeypatch) -> None:
    from recgraph.retrieval import Retriever, create_retriever
    from tests.retrieval.test_walks import chain_and_island

    for module in (kernels, pixie_kernels):
        module._WARM.clear()
    pixie_kernels.warm_up()  # Pixie's kernels and the shared ones
    assert kernels._WARM == [True] and pixie_kernels._WARM == [True]
    for name in ("ppr", "salsa", "pixie"):
        create_retriever(name).fit(chain_and_island()).save(tmp_path / name)
        for module in (kernels, pixie_kernels):
            module._WARM.clear()
        Retriever.load(tmp_path / name)
        assert kernels._WARM == [True], f"{name}: warmed when loaded"
        assert pixie_kernels._WARM == ([True] if name == "pixie" else [])


@pytest.mark.parametrize("with_overlay", [False, True])
def test_pixie_walk_visits_items_as_often_as_the_exact_walk_with_restart(
    with_overlay: bool,
) -> None:
    r"""Visit frequencies of many steps against the exact distribution of the walk.

    A step from item ``i`` goes to a user ``u`` with probability ``A[u, i] / d_in(i)``
    then to an item ``j`` with ``A[u, j] / d_out(u)`` (``A``: trained plus overlay
    edges): ``T = P Q``. Each walker starts at the query item ``q``, records the item it
    reaches and restarts with probability ``r``, so its expected visits over ``S`` steps
    are :math:`\sum_{t<S} p_t T` with :math:`p_0 = e_q`,
    :math:`p_{t+1} = r e_q + (1-r) p_t T` (exact, start included).

    Tolerance: a visit's indicator has variance ``p(1-p)``; the walk forgets everything
    at a restart, so visits ``k`` steps apart are correlated by at most ``(1-r)^k`` and
    the variance of a frequency over ``N`` steps is at most
    :math:`p(1-p)(1 + 2\sum_k (1-r)^k)/N = p(1-p)(2-r)/(rN)`. Each item's frequency must
    lie within 5 of those standard deviations (plus 1e-4 for items never reached).
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(11)
    n_users, n_items, r = 6, 7, 0.5
    trained = rng.random((n_users, n_items)) < 0.35
    trained[np.arange(n_users), np.arange(n_users) % n_items] = True  # nobody stuck
    trained[np.arange(n_items) % n_users, np.arange(n_items)] = True
    overlay = GraphOverlay()
    union = trained.copy()
    if with_overlay:
        free_u, free_i = np.nonzero(~trained)
        pick = rng.choice(len(free_u), 6, replace=False)
        overlay.add(free_u[pick], free_i[pick])
        union[free_u[pick], free_i[pick]] = True
    out = sp.csr_matrix(trained.astype(np.float32))
    inn = sp.csr_matrix(trained.T.astype(np.float32))
    graph = kernels.graph_tuple(
        (out.indptr, out.indices), (inn.indptr, inn.indices),
        overlay.arrays("out"), overlay.arrays("in"),
    )  # fmt: skip

    def exact(edges: np.ndarray, q: int, steps: int) -> np.ndarray:
        a = edges.astype(np.float64)
        step = (a / a.sum(axis=0)).T @ (a / a.sum(axis=1, keepdims=True))  # items -> items
        home = np.eye(n_items)[q]
        p, total = home, np.zeros(n_items)
        for _ in range(steps):
            visit = p @ step
            total += visit
            p = r * home + (1 - r) * visit
        return total / total.sum()

    q, walkers, total_steps = 2, 400, 400_000
    keys, counts = pixie_kernels.pixie_walk(
        graph, np.array([q], np.int64), np.array([total_steps], np.int64),
        np.array([walkers], np.int64), r, 3, 5, 4.0, 0, np.zeros(0), np.zeros(0, np.uint8),
    )  # fmt: skip
    assert counts.sum() == total_steps  # nobody is stuck: every step records a visit
    seen = np.zeros(n_items)
    seen[keys] = counts  # one query item: keys are items
    frequency = seen / seen.sum()
    want = exact(union, q, total_steps // walkers)
    bound = 5 * np.sqrt(want * (1 - want) * (2 - r) / (r * total_steps)) + 1e-4
    assert (np.abs(frequency - want) <= bound).all(), (frequency, want, bound)
    if with_overlay:  # the overlay's edges matter at this tolerance
        assert (np.abs(exact(trained, q, total_steps // walkers) - want) > 3 * bound).any()


def top_allowed_reference(targets, values, seen, forbidden, allowed, k):
    """One request's top ``k`` as plain Python: positive, not seen nor forbidden, allowed."""
    out = {int(x) for x in seen} | {int(x) for x in forbidden}
    keep = [
        (int(t), np.float32(v))
        for t, v in zip(targets, values, strict=True)
        if np.float32(v) > 0 and int(t) not in out and (not len(allowed) or allowed[t])
    ]
    keep.sort(key=lambda pair: (-pair[1], pair[0]))
    return [t for t, _ in keep[:k]], len(keep), [v for _, v in keep[:k]]


@pytest.mark.parametrize("ascending", [True, False])
def test_top_allowed_leaves_out_the_seen_row_as_a_set_would(ascending):
    """Ascending rows meet the seen row in a galloping merge, others by binary search: the
    same answer either way, for seen rows shorter and much longer than the targets."""
    rng = np.random.default_rng(3)
    for trial in range(300):
        n_nodes = int(rng.integers(1, 400))
        targets = rng.choice(
            n_nodes, size=int(rng.integers(0, min(n_nodes, 60) + 1)), replace=False
        )
        targets = np.sort(targets) if ascending else targets
        values = rng.choice([0.0, 0.1, 0.2, 0.3, 0.5], size=len(targets))
        seen = np.sort(rng.choice(n_nodes, size=int(rng.integers(0, n_nodes + 1)), replace=False))
        forbidden = np.sort(rng.choice(n_nodes, size=min(n_nodes, 3), replace=False))
        allowed = rng.random(n_nodes) < 0.8 if trial % 3 == 0 else np.zeros(0, np.bool_)
        k = int(rng.integers(1, 12))
        ids, scores, kept = kernels.top_allowed(
            targets.astype(np.int64), values, seen.astype(np.int64), forbidden.astype(np.int64),
            allowed, k,
        )  # fmt: skip
        want, eligible, _ = top_allowed_reference(targets, values, seen, forbidden, allowed, k)
        assert ids.tolist() == want and kept == eligible
        np.testing.assert_array_equal(
            scores, np.float32(values[[list(targets).index(t) for t in want]])
        )


@pytest.mark.parametrize("ascending", [True, False])
def test_top_allowed_on_odd_rows_answers_as_the_set_reference(ascending):
    """Duplicate targets and seen entries, NaN and negative scores, empty seen rows and ``k``
    past the eligible targets: the same ids, scores and count as the set-based reference."""
    rng = np.random.default_rng(11)
    kinds = {"duplicate targets": 0, "duplicate seen": 0, "empty seen": 0, "k past kept": 0}
    for trial in range(400):
        n_nodes = int(rng.integers(1, 200))
        targets = rng.choice(n_nodes, size=int(rng.integers(0, 50)), replace=True)
        targets = np.sort(targets) if ascending else targets
        values = rng.choice([np.nan, -0.3, -0.0, 0.0, 0.1, 0.2, 0.5], size=len(targets))
        seen = (
            np.zeros(0, np.int64)
            if trial % 4 == 0
            else np.sort(rng.choice(n_nodes, size=int(rng.integers(1, 2 * n_nodes + 1))))
        )
        forbidden = np.sort(rng.choice(n_nodes, size=min(n_nodes, 2)))  # may repeat too
        allowed = rng.random(n_nodes) < 0.7 if trial % 5 == 0 else np.zeros(0, np.bool_)
        k = int(rng.integers(1, len(targets) + 6))
        ids, scores, kept = kernels.top_allowed(
            targets.astype(np.int64), values, seen.astype(np.int64), forbidden.astype(np.int64),
            allowed, k,
        )  # fmt: skip
        want, eligible, want_scores = top_allowed_reference(
            targets, values, seen, forbidden, allowed, k
        )
        assert ids.tolist() == want and kept == eligible, trial
        np.testing.assert_array_equal(scores, np.array(want_scores, np.float32))
        assert not np.isnan(scores).any() and (scores > 0).all()
        kinds["duplicate targets"] += len(np.unique(targets)) < len(targets)
        kinds["duplicate seen"] += len(np.unique(seen)) < len(seen)
        kinds["empty seen"] += not len(seen)
        kinds["k past kept"] += k > kept
    assert min(kinds.values()) >= 20, kinds  # each odd case was met, often


def test_top_allowed_counts_a_score_below_float32s_least_as_not_scored():
    """A float64 score that rounds to a float32 0 is no score, as in the general path's float32
    rows (a stored zero is absent there): neither listed nor counted, so the short list's
    zero fill places it among the unreached targets, lowest index first."""
    targets = np.array([0, 1, 2, 3], np.int64)
    values = np.array([1e-50, 0.5, 1e-300, 0.25])
    none = np.zeros(0, np.int64)
    ids, scores, kept = kernels.top_allowed(targets, values, none, none, np.zeros(0, bool), 4)
    assert ids.tolist() == [1, 3] and kept == 2
    assert scores.tolist() == [0.5, 0.25]
