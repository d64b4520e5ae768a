"""FAISS indexes (flat, HNSW, IVF), with exclusions applied inside the search by ``IDSelector``.

Needs ``faiss-cpu`` (the ``ann`` extra). Every FAISS index type used here takes
an ``IDSelector`` in its search parameters, so nothing excluded is ever even
scored: the global ``allowed`` mask becomes an ``IDSelectorBitmap`` shared by
the whole batch; a query with its own exclusions is searched alone with
``allowed AND NOT its ids``, because FAISS takes one selector per call. Rows
without exclusions stay batched (FAISS spreads a batch over its threads).

Saved with ``faiss.write_index`` to ``index.faiss`` (FAISS's own binary format).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import Field

from recgraph.index.base import Excluded, Hits, Index, IndexConfig, Mask, partition_count

FAISS_FILE = "index.faiss"


class FaissFlatConfig(IndexConfig):
    """No knobs: exhaustive search with FAISS's SIMD kernels."""


class FaissHNSWConfig(IndexConfig):
    """Graph search (HNSW).

    ``m`` links per node (memory ``~ 8 m`` bytes per item, better recall),
    ``ef_construction`` the build-time beam (slower build, better graph),
    ``ef_search`` the query-time beam (raised to ``k`` when smaller): the
    recall / speed knob.
    """

    m: int = Field(default=32, ge=4, le=256)
    ef_construction: int = Field(default=80, ge=8)
    ef_search: int = Field(default=64, ge=1)


class FaissIVFConfig(IndexConfig):
    """Inverted lists over k-means cells (IVF-Flat).

    ``n_lists`` cells (default ``2 * sqrt(n_items)``, fewer on small data so
    each cell trains on enough points); a query scans the ``n_probe`` nearest
    cells: the recall / speed knob. k-means runs ``kmeans_iterations`` rounds
    on at most ``train_points_per_list * n_lists`` sampled items (``seed``
    fixes the sample and the initial centroids).
    """

    n_lists: int | None = Field(default=None, ge=1)
    n_probe: int = Field(default=32, ge=1)
    train_points_per_list: int = Field(default=40, ge=8)
    kmeans_iterations: int = Field(default=10, ge=1)
    seed: int = 0


class _FaissIndex(Index):
    """What the FAISS types share: build, selectors, scores, save and load."""

    def _faiss_metric(self) -> int:
        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2

    def _new_index(self, vectors: np.ndarray) -> Any:
        """An empty (possibly untrained) FAISS index for ``vectors``."""
        raise NotImplementedError

    def _train(self, index: Any, vectors: np.ndarray) -> None:
        """Train ``index`` when its type needs it."""

    def _build(self, vectors: np.ndarray) -> None:
        index = self._new_index(vectors)
        if not index.is_trained:
            self._train(index, vectors)
        index.add(vectors)
        self.index_ = index
        self._apply_runtime_settings()

    def _search_params(self, k: int, selector: Any) -> Any:
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _raw_search(
        self, queries: np.ndarray, k: int, selector: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS call; scores made higher-is-better, empty slots ``-1`` / ``-inf``."""
        fetch = min(k, self.n_items)
        params = self._search_params(fetch, selector)
        distances, labels = self.index_.search(queries, fetch, params=params)
        labels = labels.astype(np.int64, copy=False)
        scores = distances if self.metric == "ip" else -distances
        scores = np.where(labels >= 0, scores, -np.inf).astype(np.float32)
        if fetch < k:
            labels = np.pad(labels, ((0, 0), (0, k - fetch)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, k - fetch)), constant_values=-np.inf)
        return labels, scores

    def _search(self, queries: np.ndarray, k: int, exclude: Excluded, allowed: Mask) -> Hits:
        # the bitmap's bytes must outlive every selector that points into them
        bitmap = None if allowed is None else np.packbits(allowed, bitorder="little")
        allowed_sel = (
            None if bitmap is None else faiss.IDSelectorBitmap(self.n_items, faiss.swig_ptr(bitmap))
        )
        if exclude is None:
            return self._raw_search(queries, k, allowed_sel)
        ids = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        n_banned = np.diff(exclude.indptr)
        free = np.flatnonzero(n_banned == 0)
        if len(free):
            ids[free], scores[free] = self._raw_search(queries[free], k, allowed_sel)
        for row in np.flatnonzero(n_banned):
            banned = np.ascontiguousarray(
                exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]], dtype=np.int64
            )
            banned_sel = faiss.IDSelectorBatch(banned)
            not_banned = faiss.IDSelectorNot(banned_sel)
            selector = (
                not_banned if allowed_sel is None else faiss.IDSelectorAnd(allowed_sel, not_banned)
            )
            row_ids, row_scores = self._raw_search(queries[row : row + 1], k, selector)
            ids[row], scores[row] = row_ids[0], row_scores[0]
        return ids, scores

    def _save_state(self, path: Path) -> None:
        faiss.write_index(self.index_, str(path / FAISS_FILE))

    def _load_state(self, path: Path) -> None:
        self.index_ = faiss.read_index(str(path / FAISS_FILE))
        self._apply_runtime_settings()

    def _apply_runtime_settings(self) -> None:
        """Query-time knobs that live on the FAISS object rather than in each call."""


class FaissFlatIndex(_FaissIndex):
    r"""Exhaustive search in FAISS: exact, like :class:`~recgraph.index.exact.ExactIndex`, on FAISS's kernels."""

    name = "faiss_flat"
    config_class = FaissFlatConfig
    config: FaissFlatConfig

    def _new_index(self, vectors: np.ndarray) -> Any:
        return faiss.IndexFlat(self.dim, self._faiss_metric())


class FaissHNSWIndex(_FaissIndex):
    """Hierarchical navigable small-world graph (Malkov & Yashunin, 2018) over the raw vectors.

    A query walks the graph greedily from the top layer down, keeping the
    ``ef_search`` best nodes seen; cost grows about as ``log n``. Items a
    selector rules out are still walked through (the graph stays connected)
    but never returned.
    """

    name = "faiss_hnsw"
    config_class = FaissHNSWConfig
    config: FaissHNSWConfig

    def _new_index(self, vectors: np.ndarray) -> Any:
        index = faiss.IndexHNSWFlat(self.dim, self.config.m, self._faiss_metric())
        index.hnsw.efConstruction = self.config.ef_construction
        return index

    def _apply_runtime_settings(self) -> None:
        self.index_.hnsw.efSearch = self.config.ef_search

    def _search_params(self, k: int, selector: Any) -> Any:
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.config.ef_search, k)
        if selector is not None:
            params.sel = selector
        return params


class FaissIVFIndex(_FaissIndex):
    r"""Inverted file: k-means cells, and a query scans only its ``n_probe`` nearest cells.

    Build: k-means on a sample gives centroids :math:`c_1..c_L`; each item is
    stored in the list of its nearest centroid. Search: rank the centroids by
    the metric, scan the vectors of the best ``n_probe`` lists exactly. Cost
    is about ``n_probe / n_lists`` of exhaustive search.
    """

    name = "faiss_ivf"
    config_class = FaissIVFConfig
    config: FaissIVFConfig

    def n_lists_for(self, n_items: int) -> int:
        """``n_lists`` if set, else ``2 sqrt(n)``, capped so each list trains on 39+ points."""
        default = min(round(2 * math.sqrt(n_items)), n_items // 39)
        return partition_count(self.config.n_lists, n_items, default)

    def _new_index(self, vectors: np.ndarray) -> Any:
        n_lists = self.n_lists_for(len(vectors))
        # the factory gives an index that owns its coarse quantizer
        return faiss.index_factory(self.dim, f"IVF{n_lists},Flat", self._faiss_metric())

    def _train(self, index: Any, vectors: np.ndarray) -> None:
        n_train = min(len(vectors), self.config.train_points_per_list * index.nlist)
        rng = np.random.default_rng(self.config.seed)
        sample = vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))]
        index.cp.seed = self.config.seed
        index.cp.niter = self.config.kmeans_iterations
        index.cp.max_points_per_centroid = self.config.train_points_per_list
        index.cp.min_points_per_centroid = 1
        index.train(sample)

    def _apply_runtime_settings(self) -> None:
        self.index_.nprobe = self.config.n_probe

    def _search_params(self, k: int, selector: Any) -> Any:
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self.config.n_probe, self.index_.nlist)
        if selector is not None:
            params.sel = selector
        return params
