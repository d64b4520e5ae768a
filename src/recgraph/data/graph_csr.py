"""A compact graph for serving: int32 CSR in both directions, saved as ``.npy`` and memory-mapped.

A :class:`GraphCSR` holds one graph twice: rows by source (``out``: whom
each node points to) and rows by target (``in``: who points at each node).
Row pointers are int64 (a graph may have more than ``2**31`` edges),
neighbour indices int32 (at most ``2**31 - 1`` nodes): 12 bytes an edge for
both directions, plus 16 bytes a node. Saved as plain ``.npy`` files with a
small ``graph.json``, a graph is opened with ``mmap_mode="r"``: a server
starts without reading it, and several worker processes share one copy of
the pages through the page cache (the way Cassovary and GraphJet keep a
graph in memory).

Built three ways:

- :meth:`GraphCSR.from_edges` / :meth:`GraphCSR.from_csr`, in memory, for a
  model fitted on :class:`~recgraph.data.interactions.Interactions`;
- :func:`build_from_store`, streaming the store's follows in chunks
  (:meth:`Store.iter_follow_chunks`) into files: memory is one chunk plus
  the node arrays, never a frame of every edge; the second direction is a
  counting sort over memory-mapped edge files, chunk by chunk.

Bipartite graphs (users x items) use the same class with ``n_rows`` users and
``n_cols`` items; one-sided graphs (accounts follow accounts) have
``n_rows == n_cols``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import IdMap
from recgraph.errors import InputError
from recgraph.files import atomic_path, atomic_write, read_manifest
from recgraph.progress import progress_bar

FORMAT_VERSION = 1
MANIFEST = "graph.json"
_ARRAYS = ("out_indptr", "out_indices", "in_indptr", "in_indices")
Side = Literal["out", "in"]

#: Edges sorted per step of the streaming counting sort (about 40 bytes each in flight).
SORT_CHUNK = 4_000_000


@dataclass
class GraphCSR:
    """A graph as two CSRs: ``out`` (rows = sources) and ``in`` (rows = targets).

    Arrays may be in-memory numpy arrays or read-only memory maps; every
    method only reads them. Within a row, neighbours are in ascending order
    when the graph came from sorted edges (directed store, ``from_csr``).
    """

    out_indptr: np.ndarray
    out_indices: np.ndarray
    in_indptr: np.ndarray
    in_indices: np.ndarray
    n_rows: int
    n_cols: int

    # ------------------------------------------------------------------ building
    @classmethod
    def from_csr(cls, matrix: sp.spmatrix) -> GraphCSR:
        """Both directions of a sparse matrix's nonzero pattern (values are dropped).

        The ``out`` side's indices are the matrix's own array when it is
        canonical int32 (no copy: the graph only reads it).
        """
        out = sp.csr_matrix(matrix)
        if not out.has_canonical_format:
            out = out.copy()  # the caller's matrix is left as it was
            out.sum_duplicates()
        n_rows, n_cols = out.shape
        _check_size(n_rows, n_cols)
        out_indptr = np.asarray(out.indptr, dtype=np.int64)
        out_indices = np.asarray(out.indices, dtype=np.int32)
        transposed = out.T.tocsr()  # scipy's transpose comes out sorted
        del out
        transposed.sort_indices()
        in_indptr = np.asarray(transposed.indptr, dtype=np.int64)
        in_indices = np.asarray(transposed.indices, dtype=np.int32)
        return cls(out_indptr, out_indices, in_indptr, in_indices, int(n_rows), int(n_cols))

    @classmethod
    def from_edges(
        cls, src: np.ndarray, dst: np.ndarray, n_rows: int, n_cols: int | None = None
    ) -> GraphCSR:
        """From edge arrays (duplicates collapse to one edge)."""
        n_cols = n_rows if n_cols is None else n_cols
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        matrix = sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(n_rows, n_cols))
        return cls.from_csr(matrix)

    # ------------------------------------------------------------------ reading
    @property
    def n_edges(self) -> int:
        return int(self.out_indptr[-1])

    def degrees(self, side: Side = "out") -> np.ndarray:
        """Edges per row of one side (int64)."""
        return np.diff(self._indptr(side))

    def neighbors(self, node: int, side: Side = "out") -> np.ndarray:
        """The targets of ``node`` (``out``) or its sources (``in``), as a view."""
        indptr, indices = self.arrays(side)
        return indices[indptr[node] : indptr[node + 1]]

    def gather(
        self, nodes: np.ndarray, side: Side = "out", cap: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of many nodes at once: ``(owner, neighbour)``.

        ``owner[j]`` is the position in ``nodes`` whose row ``neighbour[j]``
        came from. With ``cap > 0`` a row longer than ``cap`` gives ``cap``
        evenly spaced entries (a fixed sample: the same on every call), so the
        work is at most ``len(nodes) * cap`` whatever the degrees.
        """
        indptr, indices = self.arrays(side)
        nodes = np.asarray(nodes, dtype=np.int64)
        starts = np.asarray(indptr[nodes], dtype=np.int64)
        lengths = np.asarray(indptr[nodes + 1], dtype=np.int64) - starts
        if cap and len(lengths) and lengths.max() <= cap:
            cap = 0
        taken = np.minimum(lengths, cap) if cap else lengths
        total = int(taken.sum())
        owner = np.repeat(np.arange(len(nodes)), taken)
        if not total:
            return owner, np.zeros(0, dtype=np.int64)
        within = np.arange(total) - np.repeat(np.cumsum(taken) - taken, taken)
        if cap:
            stride = np.maximum(lengths // np.maximum(taken, 1), 1)
            within = within * stride[owner]
        return owner, np.asarray(indices[starts[owner] + within], dtype=np.int64)

    def to_csr(self, side: Side = "out") -> sp.csr_matrix:
        """One side as a binary float32 scipy CSR (copies the arrays into memory)."""
        indptr, indices = self.arrays(side)
        shape = (self.n_rows, self.n_cols) if side == "out" else (self.n_cols, self.n_rows)
        return sp.csr_matrix(
            (np.ones(len(indices), np.float32), np.array(indices), np.array(indptr)),
            shape=shape,
        )

    def _indptr(self, side: Side) -> np.ndarray:
        return self.arrays(side)[0]

    def arrays(self, side: Side) -> tuple[np.ndarray, np.ndarray]:
        """One side's arrays as plain ndarrays (memory maps viewed without copying:
        ``np.memmap``'s Python-level ``__getitem__`` costs more than a walk step's gather)."""
        sources = (self.out_indptr, self.out_indices, self.in_indptr, self.in_indices)
        plain = self.__dict__.get("_plain")
        if plain is None or any(a is not b for a, b in zip(plain[0], sources, strict=True)):
            plain = (
                sources,
                (np.asarray(self.out_indptr), np.asarray(self.out_indices)),
                (np.asarray(self.in_indptr), np.asarray(self.in_indices)),
            )
            self.__dict__["_plain"] = plain
        return plain[1] if side == "out" else plain[2]

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the four arrays as ``.npy`` and ``graph.json`` (written last) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            save_array(folder / f"{name}.npy", getattr(self, name))
        _write_manifest(folder, self.n_rows, self.n_cols, self.n_edges)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, mmap: bool = True) -> GraphCSR:
        """Open a saved graph; ``mmap=True`` maps the files read-only instead of reading them."""
        folder = Path(folder)
        manifest = read_graph_manifest(folder / MANIFEST)
        arrays = {name: load_array(folder / f"{name}.npy", mmap=mmap) for name in _ARRAYS}
        graph = cls(**arrays, n_rows=int(manifest["n_rows"]), n_cols=int(manifest["n_cols"]))
        if graph.n_edges != int(manifest["n_edges"]) or len(graph.in_indices) != graph.n_edges:
            raise InputError(f"{folder}: the arrays do not match graph.json's n_edges")
        return graph


def read_graph_manifest(manifest_path: str | os.PathLike) -> dict:
    """A saved graph's ``graph.json``, once its format is one :meth:`GraphCSR.load` reads
    (:class:`InputError` otherwise); the registry's promote check reads it with this too."""
    return read_manifest(manifest_path, "graph", FORMAT_VERSION)


# ---------------------------------------------------------------------- single arrays
def save_array(target: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one array as a plain ``.npy`` atomically (never pickled).

    A memory map of ``target`` itself is left as it is (it is that file).
    """
    target = Path(target)
    if isinstance(array, np.memmap) and Path(array.filename or "") == target.resolve():
        return target
    with atomic_write(target) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    return target


def load_array(source: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """A ``.npy`` array, memory-mapped read-only (``mmap``) or read; never unpickled.

    A map is pages of the file: processes that open the same file share them.
    """
    return np.load(source, mmap_mode="r" if mmap else None, allow_pickle=False)


def available_memory() -> int:
    """Bytes of memory the kernel says are available (``MemAvailable``: free plus the page
    cache it can drop); the free pages where ``/proc/meminfo`` is not there."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def warm_pages(arrays: Iterable[np.ndarray], *, share: float = 0.5) -> int:
    """Read one byte of every page of ``arrays`` (memory maps: their pages are read from
    disk if the page cache had dropped them, and mapped into this process), so a server's
    first requests do not wait for them. Skipped when the arrays take more than ``share``
    of the available memory (they would push out each other, or other processes' pages).
    Returns the bytes warmed (0 when skipped)."""
    arrays = [np.asarray(a) for a in arrays]
    total = sum(a.nbytes for a in arrays)
    if not total or total > share * available_memory():
        return 0
    page = os.sysconf("SC_PAGE_SIZE")
    for array in arrays:
        flat = array.reshape(-1)
        if flat.flags.c_contiguous and flat.nbytes:
            flat.view(np.uint8)[::page].max()  # one read a page
    return total


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """``target`` as a hard link to ``source`` (one inode: one copy on disk and in the page
    cache), replacing what ``target`` was; a copy where the file system has no hard links."""
    source, target = Path(source), Path(target)
    if target.exists() and target.samefile(source):
        return target
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return target


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether both paths exist and are one file (a hard link of the other, or the same path)."""
    try:
        return Path(a).samefile(b)
    except OSError:
        return False


# ---------------------------------------------------------------------- binary scipy CSR files
def index_dtype(n_entries: int, *shape: int) -> type[np.integer]:
    """int32 when every index and row pointer fits (scipy keeps both in one dtype), else int64."""
    fits = max(n_entries, *shape, 0) <= np.iinfo(np.int32).max
    return np.int32 if fits else np.int64


def save_binary_csr(folder: str | os.PathLike, prefix: str, matrix: sp.csr_matrix) -> None:
    """A binary CSR as ``{prefix}.indptr.npy``, ``.indices.npy`` (int32 where they fit) and
    ``.data.npy`` (float32 ones), to be memory-mapped by :func:`load_binary_csr`.

    The ones are a file too, so that the opened matrix holds no array of its own:
    every process that opens the files shares all three.
    """
    save_csr(folder, prefix, matrix, binary=True)


def save_csr(
    folder: str | os.PathLike, prefix: str, matrix: sp.csr_matrix, *, binary: bool = False
) -> None:
    """A CSR with its values (``binary``: float32 ones instead) as the files of
    :func:`save_binary_csr`, memory-mapped by :func:`load_binary_csr` the same way."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    matrix = sp.csr_matrix(matrix)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()  # sorted, no duplicates: a mapped matrix is never re-sorted
    dtype = index_dtype(matrix.nnz, *matrix.shape)
    save_array(folder / f"{prefix}.indptr.npy", np.asarray(matrix.indptr, dtype=dtype))
    save_array(folder / f"{prefix}.indices.npy", np.asarray(matrix.indices, dtype=dtype))
    data = matrix.data
    if binary and (data.dtype != np.float32 or not bool((data == 1).all())):
        data = np.ones(matrix.nnz, np.float32)
    save_array(folder / f"{prefix}.data.npy", data)


def binary_csr_files(folder: str | os.PathLike, prefix: str) -> list[Path]:
    """The files :func:`save_binary_csr` writes."""
    return [Path(folder) / f"{prefix}.{part}.npy" for part in ("indptr", "indices", "data")]


def load_binary_csr(
    folder: str | os.PathLike, prefix: str, shape: tuple[int, int], *, mmap: bool = True
) -> sp.csr_matrix:
    """Open what :func:`save_binary_csr` wrote as a scipy CSR over the (mapped) files.

    No array is copied: the matrix's ``indptr``, ``indices`` and ``data`` are
    read-only views of the maps, which every process opening the same files
    shares. Any in-place change raises (they are read-only).
    """
    indptr, indices, data = (
        load_array(path, mmap=mmap) for path in binary_csr_files(folder, prefix)
    )
    if len(indptr) != shape[0] + 1 or len(indices) != int(indptr[-1]) or len(data) != len(indices):
        raise InputError(f"{Path(folder) / prefix}.*.npy: the arrays do not make a {shape} CSR")
    matrix = sp.csr_matrix((np.asarray(data), np.asarray(indices), np.asarray(indptr)), shape=shape)
    matrix.has_canonical_format = True  # saved so: scipy need not check (or sort) again
    return matrix


def _check_size(n_rows: int, n_cols: int) -> None:
    if max(n_rows, n_cols) > np.iinfo(np.int32).max:
        raise ValueError("more nodes than int32 indices can hold")


def _write_manifest(folder: Path, n_rows: int, n_cols: int, n_edges: int) -> None:
    with atomic_write(folder / MANIFEST, "w") as handle:
        handle.write(
            json.dumps(
                {
                    "format_version": FORMAT_VERSION,
                    "n_rows": int(n_rows),
                    "n_cols": int(n_cols),
                    "n_edges": int(n_edges),
                    "index_dtype": "int32",
                    "indptr_dtype": "int64",
                },
                indent=2,
            )
        )


# ---------------------------------------------------------------------- streaming build
def build_from_chunks(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    n_nodes: int,
    folder: str | os.PathLike,
    *,
    symmetric: bool = False,
    sorted_by_source: bool = True,
) -> GraphCSR:
    """Write a one-sided graph's CSR files from ``(src, dst)`` chunks and map them.

    Edges go to two raw int32 files as they arrive (memory: one chunk); then
    each direction is a counting sort over the memory-mapped files, chunk by
    chunk. ``symmetric`` adds every edge's reverse (an undirected store holds
    a friendship once). With ``sorted_by_source`` (and not symmetric) the
    ``out`` side is the destination file as it came, rows in order.
    """
    _check_size(n_nodes, n_nodes)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="csr-", dir=folder))
    try:
        src_path, dst_path = scratch / "src.i32", scratch / "dst.i32"
        n_edges = 0
        out_degree = np.zeros(n_nodes, dtype=np.int64)
        last_source = -1
        in_order = sorted_by_source and not symmetric
        with open(src_path, "wb") as src_file, open(dst_path, "wb") as dst_file:
            for src, dst in chunks:
                src = np.asarray(src, dtype=np.int32)
                dst = np.asarray(dst, dtype=np.int32)
                if len(src) and (src.min() < 0 or max(src.max(), dst.max()) >= n_nodes):
                    raise InputError(f"an edge names a node outside 0..{n_nodes - 1}")
                if symmetric:
                    src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
                elif in_order and len(src):
                    if src[0] < last_source or (np.diff(src) < 0).any():
                        raise InputError("edges are not sorted by source")
                    last_source = int(src[-1])
                src.tofile(src_file)
                dst.tofile(dst_file)
                out_degree += np.bincount(src, minlength=n_nodes)
                n_edges += len(src)
        src_mm = np.memmap(src_path, dtype=np.int32, mode="r", shape=(n_edges,))
        dst_mm = np.memmap(dst_path, dtype=np.int32, mode="r", shape=(n_edges,))
        out_indptr = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(out_degree, out=out_indptr[1:])
        np.save(folder / "out_indptr.npy", out_indptr)
        out_indices = np.lib.format.open_memmap(
            folder / "out_indices.npy", mode="w+", dtype=np.int32, shape=(n_edges,)
        )
        if in_order:
            for start in range(0, n_edges, SORT_CHUNK):
                out_indices[start : start + SORT_CHUNK] = dst_mm[start : start + SORT_CHUNK]
        else:
            _counting_sort(src_mm, dst_mm, out_indptr, out_indices, "csr out")
        out_indices.flush()
        del out_indices
        in_degree = np.zeros(n_nodes, dtype=np.int64)
        for start in range(0, n_edges, SORT_CHUNK):
            in_degree += np.bincount(dst_mm[start : start + SORT_CHUNK], minlength=n_nodes)
        in_indptr = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(in_degree, out=in_indptr[1:])
        np.save(folder / "in_indptr.npy", in_indptr)
        in_indices = np.lib.format.open_memmap(
            folder / "in_indices.npy", mode="w+", dtype=np.int32, shape=(n_edges,)
        )
        _counting_sort(dst_mm, src_mm, in_indptr, in_indices, "csr in")
        in_indices.flush()
        del in_indices, src_mm, dst_mm
        _write_manifest(folder, n_nodes, n_nodes, n_edges)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return GraphCSR.load(folder)


def _counting_sort(
    keys: np.ndarray, values: np.ndarray, indptr: np.ndarray, out: np.ndarray, what: str
) -> None:
    """``out[indptr[k] + rank] = value`` for every ``(k, value)``, stable, one chunk at a time."""
    cursor = indptr[:-1].copy()
    total = len(keys)
    with progress_bar(what, total=total, unit="edges") as advance:
        for start in range(0, total, SORT_CHUNK):
            k = np.asarray(keys[start : start + SORT_CHUNK], dtype=np.int64)
            v = np.asarray(values[start : start + SORT_CHUNK])
            order = np.argsort(k, kind="stable")
            k, v = k[order], v[order]
            unique, first, counts = np.unique(k, return_index=True, return_counts=True)
            rank = np.arange(len(k)) - np.repeat(first, counts)
            out[cursor[k] + rank] = v
            cursor[unique] += counts
            advance(len(k))


def build_from_store(
    store, folder: str | os.PathLike, *, chunk_rows: int = 1_000_000
) -> tuple[GraphCSR, IdMap]:
    """The store's active follow graph as memory-mapped CSR files in ``folder``, and its id map.

    Streams :meth:`Store.iter_follow_chunks` (never a frame of every edge);
    an undirected store gets both directions of each friendship. Node ``i``
    is position ``i`` of :meth:`Store.account_index` (``ids`` returned).
    """
    keys, ids = store.account_index()
    symmetric = store.follows_directed() is False

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for chunk in store.iter_follow_chunks(chunk_rows, keys=keys):
            yield chunk.src, chunk.dst

    graph = build_from_chunks(pairs(), len(keys), folder, symmetric=symmetric)
    with atomic_write(Path(folder) / "ids.npy") as handle:
        np.save(handle, ids.to_array(), allow_pickle=False)
    return graph, ids
