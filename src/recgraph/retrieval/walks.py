"""Shared machinery of the walk retrievers (``ppr`` by push, ``salsa``, ``pixie``).

Their cost per request is bounded by a budget (an ε, a walk or step count, a
circle size), not by the graph's size: each user's scores are a short sparse
vector (targets, scores) computed on demand from

- the trained graph, a :class:`~recgraph.data.graph_csr.GraphCSR` (int32 CSR
  both ways; saved as ``.npy`` beside the model and memory-mapped on load,
  so a server starts without reading it and workers share its pages);
- a :class:`~recgraph.data.graph_overlay.GraphOverlay` of edges written after
  training (:meth:`WalkRetriever.observe`), which every walk reads beside it.

:class:`WalkRetriever` turns those vectors into ``recommend`` (masked and cut
by :func:`~recgraph.retrieval.neighborhood.sparse_top_k`, zero-score
targets after the scored ones), ``score_pairs`` (the ranker's feature) and
the per-user work on threads.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.graph_csr import GraphCSR, Side, warm_pages
from recgraph.data.graph_overlay import GraphOverlay
from recgraph.data.interactions import Interactions
from recgraph.data.sorted_keys import find_sorted
from recgraph.retrieval.base import Request, Retriever, TopK
from recgraph.retrieval.neighborhood import (
    GraphWalkConfig,
    resolve_threads,
    run_batches,
    simple_adjacency,
    zero_filled,
)
from recgraph.retrieval.sparse_top_k import sparse_top_k
from recgraph.retrieval.walk_kernels import graph_tuple, top_allowed, warm_up

GRAPH_FOLDER = "graph"
#: Users whose walk results a model keeps at most (see :meth:`WalkRetriever._cached`).
ROW_CACHE = 4096
#: Bytes of arrays those results may hold at most, per model (a PPR row on ego-Facebook:
#: ~16 kB, so ~2,000 users; a served user asked again within them does not walk again).
ROW_CACHE_BYTES = 32 << 20
#: Scratch arrays of one kind a model holds at most (see :meth:`WalkRetriever._scratch`): one
#: per core this process may use (at least 4). The kernels release the GIL, so that many make
#: progress at once; a thread past them waits for an array (more would share the same cores
#: while holding 8 bytes a node each: 80 MB at 10^7 nodes).
SCRATCH_ARRAYS = max(4, resolve_threads(0))


def _nbytes(value: Any) -> int:
    """Bytes of the arrays in ``value`` (an array, or tuples and lists of them), plus a
    little for each container: what a cached walk result holds."""
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, tuple | list):
        return 64 + sum(_nbytes(part) for part in value)
    return 64


def kernel_array(array: Any, dtype: type) -> np.ndarray:
    """``array`` as the warmed-up kernels take it: ``dtype``, C-contiguous and writable (a
    copy otherwise; numba compiles a kernel again for each other array type it meets)."""
    return np.require(array, dtype, ("C", "W"))


class WalkConfig(GraphWalkConfig):
    """What every walk model shares: the hub cap, the seed and the threads.

    A node with more than ``hub_cap`` edges is expanded through a fixed,
    evenly spaced sample of ``hub_cap`` of them (``0``: every edge); the
    sample is always used (``hub_policy="sample"``), so a walk's work per
    step is bounded even at a user's own huge follow list.

    ``users_per_batch`` is how many users one thread walks for before
    handing back its rows (only batch calls such as evaluation see it).

    ``warm_pages``: a loaded model reads one byte of every page of its
    memory-mapped graph and seen matrix (:func:`~recgraph.data.graph_csr.warm_pages`)
    when they take at most half the available memory, so a server whose
    page cache dropped them (a restart, another registry copy) reads them
    while loading, not in its first requests' walks (milliseconds when they
    are cached: 6-23 ms at 10^7 follows).
    """

    hub_policy: Literal["sample"] = "sample"
    users_per_batch: int = Field(default=64, ge=1)
    warm_pages: bool = True


class WalkGraph:
    """The trained graph plus the overlay, read as one."""

    def __init__(self, csr: GraphCSR, overlay: GraphOverlay, cap: int) -> None:
        self.csr = csr
        self.overlay = overlay
        self.cap = cap

    @property
    def out_degree(self) -> np.ndarray:
        """Every node's trained out-degree (int64), computed on each call (a full array)."""
        return self.csr.degrees("out")

    @property
    def in_degree(self) -> np.ndarray:
        """Every node's trained in-degree (int64), computed on each call (a full array)."""
        return self.csr.degrees("in")

    def trained_degree(self, nodes: np.ndarray, side: Side = "out") -> np.ndarray:
        """Edges of ``nodes`` in the trained graph (int64), read from its row pointers: no
        degree array per process (the pointers are the mapped file's pages, shared)."""
        indptr = self.csr.arrays(side)[0]
        nodes = np.asarray(nodes, dtype=np.int64)
        return np.asarray(indptr[nodes + 1], dtype=np.int64) - indptr[nodes]

    def degree(self, nodes: np.ndarray, side: Side = "out", capped: bool = True) -> np.ndarray:
        base = self.trained_degree(nodes, side)
        if capped and self.cap:
            base = np.minimum(base, self.cap)
        if len(self.overlay):
            base = base + self.overlay.degrees(nodes, side)
        return base

    def gather(
        self, nodes: np.ndarray, side: Side = "out", cap: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Capped neighbours of ``nodes`` in the trained graph, then their overlay neighbours.

        ``cap`` overrides the graph's hub cap for this call (``0``: none).
        """
        cap = (
            self.cap
            if cap is None
            else (min(cap, self.cap) if self.cap and cap else cap or self.cap)
        )
        owner, neighbour = self.trained_neighbours(nodes, side, cap)
        if len(self.overlay):
            extra_owner, extra = self.overlay.gather(nodes, side)
            if len(extra):
                owner = np.concatenate([owner, extra_owner])
                neighbour = np.concatenate([neighbour, extra])
        return owner, neighbour

    def trained_neighbours(
        self, nodes: np.ndarray, side: Side = "out", cap: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`GraphCSR.gather <recgraph.data.graph_csr.GraphCSR.gather>`'s ``(owner,
        neighbour)``, the same arrays in fewer passes over the gathered entries (a walk's
        sweep gathers 10^4 of them per request): each entry's position is one ``arange``
        plus (times) a per-row value repeated, not rebuilt from its row and offset."""
        indptr, indices = self.csr.arrays(side)
        nodes = np.asarray(nodes, dtype=np.int64)
        starts = np.asarray(indptr[nodes], dtype=np.int64)
        lengths = np.asarray(indptr[nodes + 1], dtype=np.int64) - starts
        capped = bool(cap) and len(lengths) > 0 and int(lengths.max()) > cap
        taken = np.minimum(lengths, cap) if capped else lengths
        owner = np.repeat(np.arange(len(nodes)), taken)
        total = len(owner)
        if not total:
            return owner, np.zeros(0, dtype=np.int64)
        first = np.cumsum(taken) - taken  # each row's first entry in the output
        if capped:
            stride = np.maximum(lengths // np.maximum(taken, 1), 1)
            position = np.arange(total) * np.repeat(stride, taken)
            position += np.repeat(starts - first * stride, taken)
        else:
            position = np.arange(total) + np.repeat(starts - first, taken)
        return owner, indices[position].astype(np.int64)

    def kernel_graph(self) -> tuple:
        """The trained graph and the overlay's current snapshot as the compiled walks read
        them (:func:`~recgraph.retrieval.walk_kernels.graph_tuple`), rebuilt only after the
        overlay changed."""
        # both sides from one snapshot: a write between two reads would mix two in a walk
        out_side, in_side = self.overlay.snapshot()
        held = self.__dict__.get("_kernel_graph")
        if held is not None and all(
            a is b for a, b in zip(held[0] + held[1], out_side + in_side, strict=True)
        ):
            return held[2]
        built = graph_tuple(self.csr.arrays("out"), self.csr.arrays("in"), out_side, in_side)
        self.__dict__["_kernel_graph"] = (out_side, in_side, built)
        return built


class WalkRetriever(Retriever):
    """Base of the walk models: the graph, the overlay, sparse per-user rows.

    A subclass gives :meth:`user_row` (one user's scored targets) and
    :meth:`explain`; ``recommend``, ``score_pairs``, saving and loading the
    graph and :meth:`observe` come from here.
    """

    config: WalkConfig
    explains: ClassVar[bool] = True
    no_evidence_score: ClassVar[float | None] = 0.0
    graph_: GraphCSR

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions) -> None:
        if (
            self._liked is not None
            and self._seen is not None
            and (self._liked != self._seen).nnz == 0
        ):
            self._liked = None  # the same matrix twice (no dislikes): keep one, 8 bytes an edge
        matrix = train.positives().csr("binary")
        if train.one_sided and matrix.diagonal().any():
            matrix = simple_adjacency(train)  # self-loops dropped (a copy); else the graph's own
        self.graph_ = GraphCSR.from_csr(matrix)
        self._build()

    def _build(self) -> None:
        """Derive what the walks need from ``graph_``; subclasses extend it."""
        self.overlay = GraphOverlay()
        self.walk_graph_ = WalkGraph(self.graph_, self.overlay, self.config.hub_cap)
        self._cache: OrderedDict[tuple, tuple[int, Any, int]] = OrderedDict()
        self._cache_bytes = 0  # the arrays' bytes the cache's values hold
        self._cache_lock = threading.Lock()

    def _cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key while the overlay is unchanged (a small LRU).

        A served answer asks for the same user's walk three times (its
        candidates, their explanations, the ranker's feature): it walks once.
        """
        version = self.overlay.version
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(key)
                return hit[1]
        value = compute()
        size = _nbytes(value)
        with self._cache_lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._cache_bytes -= old[2]
            self._cache[key] = (version, value, size)
            self._cache_bytes += size
            while len(self._cache) > ROW_CACHE or (
                self._cache_bytes > ROW_CACHE_BYTES and len(self._cache) > 1
            ):
                self._cache_bytes -= self._cache.popitem(last=False)[1][2]
        return value

    def _forget_walks(self) -> None:
        """Empty the cache of :meth:`_cached`."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_bytes = 0

    def _save_files(self, path: Path) -> None:
        self.graph_.save(path / GRAPH_FOLDER)

    def _load_files(self, path: Path) -> None:
        self.graph_ = GraphCSR.load(path / GRAPH_FOLDER, mmap=True)
        self._build()
        if self.config.warm_pages:
            seen = [] if self._seen is None else [self._seen.indptr, self._seen.indices]
            warm_pages([*self.graph_.arrays("out"), *self.graph_.arrays("in"), *seen])
        self._warm_up()  # the compiled walks loaded (or compiled) now, not in the first request

    def _warm_up(self) -> None:
        """Run the model's compiled kernels once (:func:`~recgraph.retrieval.walk_kernels.warm_up`)."""
        warm_up()

    def _companion(self, model: WalkRetriever) -> WalkRetriever:
        """``model`` on this model's graph, history and overlay (a circle-of-trust PPR)."""
        model.users, model.items, model.graph_kind = self.users, self.items, self.graph_kind
        model._seen, model._liked, model._popularity = self._seen, self._liked, self._popularity
        model.graph_ = self.graph_
        model._build()
        model.overlay = self.overlay
        model.walk_graph_ = self.walk_graph_
        return model

    # ------------------------------------------------------------------ scratch arrays
    def _scratch(self, dtype: type = np.float64, size: int | None = None) -> np.ndarray:
        """A zeroed array of one ``dtype`` entry per node (float64: a push's residual or a
        sweep's sums; uint8: a kernel's flags; Pixie's: one entry an item), taken
        from a pool the threads share: as many
        arrays as pushes ever ran at once, not one per thread that ever pushed (a server's
        thread pool has up to 40 threads a process), and at most ``SCRATCH_ARRAYS``, one a
        core: the kernels run without the GIL, so that many walks make progress at once,
        and a thread past them waits until one hands its array back (a few milliseconds)
        rather than allocating another (8 bytes a node) to share the same cores.
        """
        pool, lock, slots = self._scratch_pool(dtype)
        slots.acquire()
        try:
            with lock:
                scratch = pool.pop() if pool else None
            size = self.n_users if size is None else size  # (pixie: one entry an item)
            if scratch is None or len(scratch) != size:
                scratch = np.zeros(size, dtype=dtype)
        except BaseException:  # a slot never given back would leave later pushes waiting forever
            slots.release()
            raise
        return scratch

    @contextmanager
    def _scratches(self, *dtypes: type, size: int | None = None) -> Iterator[list[np.ndarray]]:
        """Zeroed pooled arrays of ``dtypes`` (taken in that order, so two walks never wait
        for each other's second array) for one compiled walk, which leaves them zeroed; a
        walk cut short zeroes them whole before they go back."""
        taken: list[np.ndarray] = []
        try:
            for dtype in dtypes:
                taken.append(self._scratch(dtype, size))
            try:
                yield taken
            except BaseException:
                for scratch in taken:
                    scratch[:] = 0
                raise
        finally:
            for scratch in taken:
                self._give_back(scratch)

    def _scratch_pool(
        self, dtype: type
    ) -> tuple[list[np.ndarray], threading.Lock, threading.BoundedSemaphore]:
        # a walk takes and gives back two or three arrays: each looked up, not built and
        # dropped (a semaphore, a lock, a dtype: ~5-15 us a call) as on the first call;
        # under the dtype as given and as its string, so that equal dtypes share one pool
        pools = self.__dict__.setdefault("_scratch_pools", {})
        found = pools.get(dtype)
        if found is None:
            lock = self.__dict__.setdefault("_scratch_lock", threading.Lock())
            new = ([], lock, threading.BoundedSemaphore(SCRATCH_ARRAYS))
            found = pools[dtype] = pools.setdefault(np.dtype(dtype).str, new)
        return found

    def _give_back(self, scratch: np.ndarray) -> None:
        """Return a zeroed array to its pool."""
        pool, lock, slots = self._scratch_pool(scratch.dtype)
        with lock:
            pool.append(scratch)
        slots.release()

    # ------------------------------------------------------------------ new edges
    def observe(self, src_ids: Sequence[str], dst_ids: Sequence[str]) -> int:
        """Edges ``src -> dst`` (external ids) written after training: walks see them now.

        A follow on an account graph, a like on a user x item graph. Ids
        the model never saw are skipped (they cannot be walked to). Returns
        how many edges were new.
        """
        self._check_fitted()
        assert self.users is not None and self.items is not None
        src = self.users.index([str(s) for s in src_ids], missing=-1)
        dst = self.items.index([str(d) for d in dst_ids], missing=-1)
        known = (src >= 0) & (dst >= 0)
        fresh = known.copy()
        for j in np.flatnonzero(known):
            row = self.graph_.neighbors(int(src[j]), "out")
            at = np.searchsorted(row, dst[j])
            fresh[j] = not (at < len(row) and row[at] == dst[j])  # trained already
        return self.overlay.add(src[fresh], dst[fresh])

    # ------------------------------------------------------------------ scores
    @abstractmethod
    def user_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """One user's scored targets: ``(targets int64, scores float64)``, targets distinct."""

    def score_rows(self, users: Sequence[int] | np.ndarray) -> sp.csr_matrix:
        """Scores of ``users`` against every target, sparse ``(len(users), n_items)`` float32."""
        users = self._check_users(users)
        return self._rows(users)

    def cached_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`user_row`, walked once while the overlay is unchanged."""
        return self._cached(("row", user), lambda: self.user_row(user))

    def _rows(self, users: np.ndarray) -> sp.csr_matrix:
        rows = [self.cached_row(int(u)) for u in users]
        lengths = np.array([len(t) for t, _ in rows], dtype=np.int64)
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate([t for t, _ in rows]) if rows else np.zeros(0, np.int64)
        data = np.concatenate([s for _, s in rows]) if rows else np.zeros(0)
        matrix = sp.csr_matrix(
            (data.astype(np.float32), indices, indptr), shape=(len(users), self.n_items)
        )
        matrix.sort_indices()
        return matrix

    def score_pairs(
        self, users: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """The walk score of each pair (0 where the walk never reached the target)."""
        users, targets = self._check_pairs(users, targets)
        if len(users) and (users == users[0]).all():  # a request's pairs: one user
            return self._row_pairs(int(users[0]), targets)
        out = np.zeros(len(users), dtype=np.float32)
        for user in np.unique(users):
            pick = np.flatnonzero(users == user)
            out[pick] = self._row_pairs(int(user), targets[pick])
        return out

    def _row_pairs(self, user: int, targets: np.ndarray) -> np.ndarray:
        """``user``'s walk score of each of ``targets`` (0 where the walk never reached it)."""
        row_targets, row_scores = self.cached_row(user)
        if len(row_targets) > 1 and not (row_targets[1:] > row_targets[:-1]).all():
            order = np.argsort(row_targets)  # (a walk's row usually comes sorted by node)
            row_targets, row_scores = row_targets[order], row_scores[order]
        at, hit = find_sorted(row_targets, targets)
        out = np.zeros(len(targets), dtype=np.float32)
        out[hit] = row_scores[at[hit]].astype(np.float32)
        return out

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """Top ``k`` targets per user from the walks; see :meth:`Retriever.recommend`.

        Targets the walks never reached score 0 and come after the others,
        lowest index first, as in the two-hop models. Edges in the overlay
        count as seen.
        """
        exclude_seen, exclude_m, allowed = request.exclude_seen, request.exclude, request.allowed
        if len(users) == 1 and not sp.issparse(allowed):
            return self._recommend_one(int(users[0]), k, exclude_seen, exclude_m, allowed)
        ids = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        step = self.config.users_per_batch
        spans = [(s, min(s + step, len(users))) for s in range(0, len(users), step)]

        def work(start: int, stop: int) -> None:
            batch = users[start:stop]
            forbidden = self.forbidden(
                batch, exclude_seen, None if exclude_m is None else exclude_m[start:stop]
            )
            ids[start:stop], scores[start:stop] = sparse_top_k(
                self._rows(batch),
                k,
                forbidden=forbidden,
                allowed=allowed[start:stop] if sp.issparse(allowed) else allowed,
            )

        threads = resolve_threads(self.config.n_threads)
        run_batches(spans, work, threads, f"{self.name} top-{k}", len(users))
        return ids, scores

    def _recommend_one(
        self,
        user: int,
        k: int,
        exclude_seen: bool,
        exclude: sp.csr_matrix | None,
        allowed: np.ndarray | None,
    ) -> TopK:
        """One request's top ``k`` without sparse matrices: the general path's answer (a walk
        that reached fewer than ``k`` allowed targets: :func:`zero_filled`)."""
        targets, values = self.cached_row(user)
        seen_row = np.zeros(0, np.int64)
        parts = [np.zeros(0, np.int64)]
        if exclude_seen:
            seen = self._seen
            assert seen is not None
            # a copy: a memory-mapped int64 history's row is a read-only view, which numba
            # would compile a second top_allowed for (seconds, in the first request)
            row = np.array(seen.indices[seen.indptr[user] : seen.indptr[user + 1]], np.int64)
            if seen.has_sorted_indices:
                seen_row = row  # an active user's row runs to thousands: searched, not sorted
            else:
                parts.append(row)
            if self.graph_kind in ("follows", "friends"):
                parts.append(np.array([user], np.int64))
            if len(self.overlay):
                parts.append(self.overlay.gather(np.array([user]), "out")[1])
        if exclude is not None:
            parts.append(np.asarray(exclude.indices, np.int64))
        forbidden = np.sort(np.concatenate(parts))
        # a mask over every target is not copied: warm_up compiles a read-only one's version
        mask = np.zeros(0, bool) if allowed is None else np.require(allowed, np.bool_, "C")
        ids, scores, kept = top_allowed(
            kernel_array(targets, np.int64), kernel_array(values, np.float64),
            seen_row, forbidden, mask, k,
        )  # fmt: skip
        if kept < k:  # every eligible target is in: zero-score targets fill the rest
            barred = np.concatenate([seen_row, forbidden])
            return zero_filled(ids, scores, barred, k, self.n_items, allowed)
        return ids[None, :], scores[None, :]

    def forbidden(
        self, users: np.ndarray, exclude_seen: bool = True, exclude: sp.csr_matrix | None = None
    ) -> sp.csr_matrix | None:
        """:meth:`Retriever.forbidden`, with the overlay's fresh edges counted as seen."""
        parts = []
        if exclude_seen:
            assert self._seen is not None
            parts.append(self._seen[users])
            if self.graph_kind in ("follows", "friends"):
                parts.append(
                    sp.csr_matrix(
                        (np.ones(len(users), np.float32), (np.arange(len(users)), users)),
                        shape=(len(users), self.n_items),
                    )
                )
            if len(self.overlay):
                owner, fresh = self.overlay.gather(users, "out")
                parts.append(
                    sp.csr_matrix(
                        (np.ones(len(owner), np.float32), (owner, fresh)),
                        shape=(len(users), self.n_items),
                    )
                )
        if exclude is not None:
            parts.append(exclude)
        if not parts:
            return None
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return sp.csr_matrix(total)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        return None
