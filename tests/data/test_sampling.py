import hashlib

import numpy as np
import pandas as pd
import pytest

from recgraph.data.interactions import Interactions
from recgraph.data.sampling import (
    SamplingConfig,
    degree_capped_samples,
    id_hash,
    id_hashes,
    keep_mask,
    keep_scores,
    mix64,
    store_samples,
)
from recgraph.data.store import Store


def reference_draw(sample: int, src: str, dst: str) -> float:
    """The module docstring's hash, written with Python integers (no numpy)."""
    mask = (1 << 64) - 1

    def h(x: str) -> int:
        return int(hashlib.md5(x.encode("utf-8")).hexdigest(), 16) % 2**32

    def m(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key = (h(src) << 32) | h(dst)
    z = m((m(key) + (sample + 1) * 0x9E3779B97F4A7C15) & mask)
    return (z >> 11) / 2**53


def star(n_leaves: int = 1000) -> Interactions:
    """Every leaf follows the hub (in-degree n) and one other leaf (out-degree 2 for most)."""
    src = [f"leaf{i}" for i in range(n_leaves)] * 2
    dst = ["hub"] * n_leaves + [f"leaf{(i + 1) % n_leaves}" for i in range(n_leaves)]
    return Interactions.from_arrays(src, dst, one_sided=True)


def test_hash_matches_the_specification_written_with_python_integers():
    pairs = [("did:plc:abc", "did:plc:xyz"), ("1", "2"), ("é", "ü"), ("", "x")]
    for sample in (0, 1, 31, 10_000):
        got = keep_scores(
            sample, id_hashes([s for s, _ in pairs]), id_hashes([t for _, t in pairs])
        )
        want = [reference_draw(sample, s, t) for s, t in pairs]
        assert got.tolist() == want  # bit for bit
    assert id_hash("did:plc:abc") == int(hashlib.md5(b"did:plc:abc").hexdigest(), 16) % 2**32


def test_draws_are_uniform_and_differ_between_samples():
    src = np.arange(20_000, dtype=np.uint32)
    dst = (src * 7 + 3).astype(np.uint32)
    a, b = keep_scores(0, src, dst), keep_scores(1, src, dst)
    assert a.min() >= 0 and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.01 and abs(np.mean(a < 0.1) - 0.1) < 0.01
    assert np.corrcoef(a, b)[0, 1] < 0.05
    # a per-edge sample index gives the same as one index at a time
    both = keep_scores(
        np.r_[np.zeros(10, int), np.ones(10, int)],
        np.r_[src[:10], src[:10]],
        np.r_[dst[:10], dst[:10]],
    )
    np.testing.assert_array_equal(both, np.r_[a[:10], b[:10]])
    assert mix64(np.array([0], np.uint64))[0] == 0


def test_keep_rule_is_the_degree_inequality():
    src_hash = np.arange(1000, dtype=np.uint32)
    dst_hash = np.arange(1000, 2000, dtype=np.uint32)
    out_degree = np.full(1000, 10.0)
    in_degree = np.linspace(1, 200, 1000)
    keep = keep_mask(3, src_hash, dst_hash, out_degree, in_degree, max_degree=32)
    r = keep_scores(3, src_hash, dst_hash)
    np.testing.assert_array_equal(keep, (r * in_degree <= 32) & (r * out_degree <= 32))
    assert keep[in_degree <= 32].all()  # small nodes keep every edge
    assert not keep.all()


def test_samples_are_deterministic_and_keep_small_nodes_whole():
    graph = star()
    config = SamplingConfig(num_samples=4, max_degree=32)
    first = list(degree_capped_samples(graph, config))
    again = list(degree_capped_samples(graph, config))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.src, b.src)
        np.testing.assert_array_equal(a.dst, b.dst)
    hub = graph.users.index_of("hub")
    for sample in first:
        # every leaf-to-leaf edge (degrees 2 and 1) survives in every sample
        assert (sample.dst != hub).sum() == 1000
    assert not np.array_equal(first[0].src[first[0].dst == hub], first[1].src[first[1].dst == hub])
    # only the requested samples, with their own index
    (only,) = degree_capped_samples(graph, config, samples=[2])
    assert only.index == 2
    np.testing.assert_array_equal(only.src, first[2].src)


def test_kept_degrees_are_capped_on_average():
    graph = star(2000)
    hub = graph.users.index_of("hub")
    config = SamplingConfig(num_samples=32, max_degree=32)
    kept = np.array([(s.dst == hub).sum() for s in degree_capped_samples(graph, config)])
    # each of 2000 edges kept with probability 32/2000: binomial mean 32, sd ~5.6
    assert abs(kept.mean() - 32) < 3
    assert kept.max() < 64 and kept.min() > 10
    uncapped = SamplingConfig(num_samples=2, max_degree=5000)
    assert all((s.dst == hub).sum() == 2000 for s in degree_capped_samples(graph, uncapped))


def test_undirected_degrees_count_both_ends_and_dislikes_are_left_out():
    graph = Interactions.from_arrays(
        ["a", "a", "b"], ["b", "c", "c"], one_sided=True, directed=False
    )
    (sample,) = degree_capped_samples(graph, SamplingConfig(num_samples=1, max_degree=2))
    assert len(sample.src) == 3  # every node has degree 2: all kept
    (capped,) = degree_capped_samples(graph, SamplingConfig(num_samples=1, max_degree=1))
    r = keep_scores(0, id_hashes(["a", "a", "b"]), id_hashes(["b", "c", "c"]))
    assert len(capped.src) == int((r * 2 <= 1).sum())


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="num_samples"):
        SamplingConfig(num_samples=0)
    with pytest.raises(ValueError, match="max_degree"):
        SamplingConfig(max_degree=0)


def test_store_samples_equal_the_in_memory_ones(tmp_path):
    graph = star(300)
    frame = pd.DataFrame(
        {"src": graph.users.external(graph.src), "dst": graph.items.external(graph.dst)}
    )
    config = SamplingConfig(num_samples=3, max_degree=16)
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        with store.writer() as writer:
            writer.follows(frame, directed=True)
        from_store: dict[int, set] = {}
        for i, src, dst in store_samples(store, config, chunk_rows=97):
            from_store.setdefault(i, set()).update(zip(src.tolist(), dst.tolist(), strict=True))
    for sample in degree_capped_samples(graph, config):
        pairs = set(
            zip(
                graph.users.external(sample.src).tolist(),
                graph.items.external(sample.dst).tolist(),
                strict=True,
            )
        )
        assert from_store[sample.index] == pairs
