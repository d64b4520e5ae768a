r"""Degree-capped subgraph samples: hubs and bots keep about ``max_degree`` edges per sample.

The Bluesky GIN trains on many small samples of the follow graph rather than
the graph itself. Sample :math:`i` (:math:`0 \le i <` ``num_samples``) keeps
the edge :math:`s \to t` when

.. math::

    r_i(s, t)\,\mathrm{in\_degree}(t) \le \mathrm{max\_degree}
    \quad\text{and}\quad
    r_i(s, t)\,\mathrm{out\_degree}(s) \le \mathrm{max\_degree},

so an edge survives with probability :math:`\min(1, c / \max(d_{in}(t),
d_{out}(s)))`: a node of degree :math:`d > c` keeps about :math:`c` of its
edges in each sample, a small node keeps all of them, and a celebrity cannot
dominate the training signal. Degrees count distinct pairs of the whole
graph; for friendships (undirected) both are the node's number of friends.

The hash, specified exactly so that a Spark job reproduces every sample bit
for bit (it calls :func:`keep_scores` and :func:`id_hashes` in a pandas UDF;
this module imports nothing but numpy and hashlib at load time):

1. **Id hash** :math:`h(x)` of an external id :math:`x` (a string):
   ``int.from_bytes(hashlib.md5(x.encode("utf-8")).digest(), "big") % 2**32``,
   the md5 digest read as a big-endian 128-bit integer, modulo :math:`2^{32}`
   (that is, its last four bytes, big-endian). The same hash gives
   ``hetero_gin`` its node inputs.
2. **Mix** :math:`m(z)`, splitmix64's finaliser on unsigned 64-bit integers
   (all arithmetic modulo :math:`2^{64}`)::

       z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
       z = (z ^ (z >> 27)) * 0x94D049BB133111EB
       z =  z ^ (z >> 31)

3. **Key** of the edge: :math:`k = h(s) \cdot 2^{32} + h(t)` (uint64).
4. **Draw**: :math:`z = m(m(k) + (i + 1) \cdot \mathtt{0x9E3779B97F4A7C15})`
   and :math:`r = \lfloor z / 2^{11} \rfloor / 2^{53}`, a float64 in
   :math:`[0, 1)` (the top 53 bits; exact in a double).

Everything is deterministic: the same ids, sample index and degrees give the
same samples on any machine, in any chunking, in any order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - type hints only: keeps the import surface to numpy
    from recgraph.data.interactions import Interactions
    from recgraph.data.store import Store

#: splitmix64 constants (Steele, Lea and Flood 2014).
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)
DEFAULT_NUM_SAMPLES = 32
DEFAULT_MAX_DEGREE = 32


def id_hash(external_id: str) -> int:
    """md5 of the UTF-8 id as a big-endian integer, modulo 2**32 (step 1 of the module docstring)."""
    digest = hashlib.md5(str(external_id).encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[-4:], "big")


def id_hashes(external_ids: Iterable[str] | np.ndarray) -> np.ndarray:
    """:func:`id_hash` of each id, as ``uint32``."""
    return np.fromiter((id_hash(x) for x in external_ids), dtype=np.uint32)


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a ``uint64`` array (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * MIX_1
        z = (z ^ (z >> np.uint64(27))) * MIX_2
        return z ^ (z >> np.uint64(31))


def keep_scores(sample: int | np.ndarray, src_hash: np.ndarray, dst_hash: np.ndarray) -> np.ndarray:
    """The draw :math:`r_i(s, t) \\in [0, 1)` of each edge (steps 3 and 4 of the module docstring).

    Parameters
    ----------
    sample
        Sample index :math:`i` (an int, or one per edge).
    src_hash, dst_hash
        :func:`id_hashes` of the edges' ends (any integer dtype holding
        values below 2**32).

    Returns
    -------
    numpy.ndarray
        float64, one per edge.
    """
    src = np.asarray(src_hash).astype(np.uint64)
    dst = np.asarray(dst_hash).astype(np.uint64)
    step = np.asarray(sample).astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        key = (src << np.uint64(32)) | dst
        z = mix64(mix64(key) + step * GOLDEN_GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def keep_mask(
    sample: int | np.ndarray,
    src_hash: np.ndarray,
    dst_hash: np.ndarray,
    src_out_degree: np.ndarray,
    dst_in_degree: np.ndarray,
    max_degree: float = DEFAULT_MAX_DEGREE,
) -> np.ndarray:
    """Whether sample ``sample`` keeps each edge: ``r * in_degree(t) <= cap and r * out_degree(s) <= cap``."""
    r = keep_scores(sample, src_hash, dst_hash)
    return (r * np.asarray(dst_in_degree, np.float64) <= max_degree) & (
        r * np.asarray(src_out_degree, np.float64) <= max_degree
    )


@dataclass(frozen=True)
class SamplingConfig:
    """How many samples and the degree cap (the issue's defaults: 32 and 32)."""

    num_samples: int = DEFAULT_NUM_SAMPLES
    max_degree: int = DEFAULT_MAX_DEGREE

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {self.num_samples}")
        if self.max_degree < 1:
            raise ValueError(f"max_degree must be at least 1, got {self.max_degree}")


@dataclass(frozen=True)
class EdgeSample:
    """The kept edges of one sample: indices into the graph's id maps."""

    index: int
    src: np.ndarray
    dst: np.ndarray


def distinct_edges(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Each positive pair once (``src``, ``dst``); an undirected pair once, as stored."""
    positives = data.positives().dedupe()
    return positives.src.astype(np.int64), positives.dst.astype(np.int64)


def edge_degrees(
    data: Interactions, src: np.ndarray, dst: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(out_degree per user, in_degree per target)`` over the distinct pairs ``src, dst``."""
    out_degree = np.bincount(src, minlength=data.n_users)
    in_degree = np.bincount(dst, minlength=data.n_items)
    if data.one_sided and not data.directed:
        both = out_degree + in_degree
        return both, both
    return out_degree, in_degree


def degree_capped_samples(
    data: Interactions,
    config: SamplingConfig | None = None,
    samples: Sequence[int] | None = None,
    *,
    hashes: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[EdgeSample]:
    """The degree-capped samples of an in-memory graph, one :class:`EdgeSample` each.

    Parameters
    ----------
    data
        The graph; dislikes are left out and repeated pairs count once.
    config
        ``num_samples`` and ``max_degree``.
    samples
        Which sample indices (default ``range(num_samples)``).
    hashes
        Precomputed :func:`id_hashes` of ``data.users`` and ``data.items``.
    """
    config = config or SamplingConfig()
    src, dst = distinct_edges(data)
    out_degree, in_degree = edge_degrees(data, src, dst)
    if hashes is None:
        user_hash = id_hashes(data.users.ids)
        item_hash = user_hash if data.one_sided else id_hashes(data.items.ids)
    else:
        user_hash, item_hash = hashes
    src_hash, dst_hash = user_hash[src], item_hash[dst]
    src_deg, dst_deg = out_degree[src], in_degree[dst]
    for i in samples if samples is not None else range(config.num_samples):
        keep = keep_mask(i, src_hash, dst_hash, src_deg, dst_deg, config.max_degree)
        yield EdgeSample(index=int(i), src=src[keep], dst=dst[keep])


def store_samples(
    store: Store,
    config: SamplingConfig | None = None,
    *,
    chunk_rows: int = 100_000,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The same samples, read straight from the store's follows in chunks.

    Two passes over ``store.iter_frames("follows")``: the first counts degrees
    by external id, the second yields ``(sample, src_ids, dst_ids)`` per chunk
    and sample (external ids, object arrays), never holding the graph. An
    undirected store counts both ends of each friendship in both degrees.
    """
    import pandas as pd

    config = config or SamplingConfig()
    directed = store.follows_directed() is not False
    out_counts: dict[str, int] = {}
    in_counts: dict[str, int] = {}
    for frame in store.iter_frames("follows", chunk_rows=chunk_rows):
        for column, counts in (("src", out_counts), ("dst", in_counts)):
            for key, value in frame[column].value_counts().items():
                counts[key] = counts.get(key, 0) + int(value)
    if not directed:
        both = {k: out_counts.get(k, 0) + in_counts.get(k, 0) for k in out_counts | in_counts}
        out_counts = in_counts = both
    for frame in store.iter_frames("follows", chunk_rows=chunk_rows):
        src = frame["src"].to_numpy(object)
        dst = frame["dst"].to_numpy(object)
        src_deg = pd.Series(src).map(out_counts).to_numpy(np.float64)
        dst_deg = pd.Series(dst).map(in_counts).to_numpy(np.float64)
        src_hash, dst_hash = id_hashes(src), id_hashes(dst)
        for i in range(config.num_samples):
            keep = keep_mask(i, src_hash, dst_hash, src_deg, dst_deg, config.max_degree)
            yield i, src[keep], dst[keep]
