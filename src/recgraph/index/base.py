"""The nearest-neighbour index interface: exact search, FAISS and ScaNN behind one API.

An index holds ``n_items`` vectors and answers "the ``k`` best items for each
query vector". Scores follow the retriever convention, *higher is better*:

- ``metric="ip"``: the inner product :math:`s(q, x) = q \\cdot x`;
- ``metric="l2"``: the negated squared distance :math:`s(q, x) = -\\lVert q - x \\rVert^2`,

so results of any index can be merged with retriever scores and with each
other, and :func:`recgraph.retrieval.base.top_k` conventions hold: ``(n, k)``
arrays, best first, id ``-1`` and score ``-inf`` past the available results.

Exclusions are pushed into the search rather than filtered after it, so that
``k`` results come back even when a user has seen many of the nearest items:

- ``exclude``: ids each query must not get (one id list per query, or a CSR
  matrix with one row per query), e.g. what a user has already seen;
- ``allowed``: a global mask (boolean over items, or an id array) of the items
  any query may get, e.g. items still live.

Index types whose library takes a filter (exact, FAISS) apply it inside the
search; the others use :func:`overfetch_search`, which never returns an
excluded id.

Query-time knobs (``ef_search``, ``n_probe``, ``leaves_to_search``,
``reorder``) are read from the config at each search, so a built index can be
tuned by assigning to ``index.config``. A subclass implements ``_build``,
``_search``, ``_save_state`` and ``_load_state``; ``save``/``load`` write
``index.json`` plus the type's own files, never pickle.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from recgraph.errors import InputError, NotFittedError
from recgraph.files import saved_folder
from recgraph.lazy_registry import open_saved, saved_header
from recgraph.retrieval.base import rows_as_csr
from recgraph.settings import validated_config

FORMAT_VERSION = 1
#: Per-query rows to leave out (CSR) or none; a boolean mask of allowed items or none.
Excluded = sp.csr_matrix | None
Mask = np.ndarray | None
#: ``(ids, scores)``, each ``(n_queries, k)``; empty slots ``-1`` / ``-inf``.
Hits = tuple[np.ndarray, np.ndarray]
INDEX_FILE = "index.json"

Metric = Literal["ip", "l2"]
Exclude = sp.spmatrix | Sequence[Sequence[int]] | None
Allowed = np.ndarray | Sequence[int] | None
#: ``raw_search(queries, fetch) -> (ids, scores)``: an unfiltered search for ``fetch`` results.
RawSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class IndexConfig(BaseModel):
    """Base of every index config: the metric, plus the type's own knobs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    metric: Metric = "ip"


class Index(ABC):
    """Top-``k`` search over a fixed set of item vectors (see the module docstring)."""

    #: Name used by :func:`recgraph.index.create_index` and in ``index.json``.
    name: ClassVar[str]
    config_class: ClassVar[type[IndexConfig]] = IndexConfig
    #: Saved-name -> class lookup, installed by :mod:`recgraph.index.registry`.
    class_for_name: ClassVar[Callable[[str], type[Index]] | None] = None

    def __init__(self, config: IndexConfig | Mapping[str, Any] | None = None, **params: Any):
        self.config = validated_config(
            self.config_class, config, params, name=self.name, what="index parameters"
        )
        self.n_items = 0
        self.dim = 0
        self._built = False

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        built = f", {self.n_items:,} x {self.dim}" if self._built else ""
        return f"{type(self).__name__}({params}{built})"

    @property
    def metric(self) -> Metric:
        return self.config.metric

    @property
    def is_built(self) -> bool:
        return self._built

    # ------------------------------------------------------------------ build
    def build(self, vectors: np.ndarray) -> Self:
        """Index ``vectors`` (shape ``(n_items, dim)``); row ``i`` becomes id ``i``.

        Parameters
        ----------
        vectors
            Item embeddings, e.g. ``model.item_vectors()``; finite numbers only.

        Returns
        -------
        self
        """
        vectors = as_float32_matrix(vectors, "vectors")
        if len(vectors) == 0:
            raise InputError("no vectors to index", field="vectors")
        self.n_items, self.dim = vectors.shape
        self._build(vectors)
        self._built = True
        return self

    @abstractmethod
    def _build(self, vectors: np.ndarray) -> None:
        """Build the type's structure from checked float32 ``vectors``."""

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        exclude: Exclude = None,
        allowed: Allowed = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items for each query, best first.

        Parameters
        ----------
        queries
            Shape ``(n_queries, dim)``, or ``(dim,)`` for one query.
        k
            Results per query.
        exclude
            Ids a query must not get: one id list per query, or a sparse
            matrix of shape ``(n_queries, n_items)`` (nonzero = excluded).
        allowed
            Ids any query may get: a boolean mask of ``n_items`` or an id
            array; ``None`` allows all.

        Returns
        -------
        ids, scores
            ``int64`` and ``float32`` arrays of shape ``(n_queries, k)``;
            scores are higher-is-better (negated squared distance for
            ``l2``). Slots past the available results hold id ``-1`` and
            score ``-inf``.
        """
        if not self._built:
            raise NotFittedError(f"index {self.name!r} is not built: call build() or load()")
        queries = as_float32_matrix(queries, "queries", dim=self.dim)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        exclude_m = rows_as_csr(exclude, len(queries), self.n_items, "exclude")
        if exclude_m is not None and exclude_m.nnz == 0:
            exclude_m = None
        allowed_mask = allowed_as_mask(allowed, self.n_items)
        if len(queries) == 0:
            return np.full((0, k), -1, np.int64), np.full((0, k), -np.inf, np.float32)
        return self._search(queries, k, exclude_m, allowed_mask)

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, exclude: Excluded, allowed: Mask) -> Hits:
        """Search checked queries; ``exclude`` is a CSR or None, ``allowed`` a bool mask or None."""

    # ------------------------------------------------------------------ persistence
    def manifest(self) -> dict[str, Any]:
        """What ``index.json`` holds."""
        header = saved_header("index", self.name, self.config, FORMAT_VERSION)
        return {**header, "n_items": self.n_items, "dim": self.dim}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``index.json`` and the type's own files into the folder ``path``."""
        if not self._built:
            raise NotFittedError(f"index {self.name!r} is not built: nothing to save")
        with saved_folder(path, INDEX_FILE, self.manifest) as folder:
            self._save_state(folder)
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> Index:
        """Rebuild a saved index; the type comes from ``index.json`` by name."""
        path = Path(path)
        index, manifest = open_saved(Index, cls, path / INDEX_FILE, "index", FORMAT_VERSION)
        index.n_items, index.dim = int(manifest["n_items"]), int(manifest["dim"])
        index._load_state(path)
        index._built = True
        return index

    @abstractmethod
    def _save_state(self, path: Path) -> None:
        """Write the type's files into the existing folder ``path``."""

    @abstractmethod
    def _load_state(self, path: Path) -> None:
        """Read back what ``_save_state`` wrote (``n_items``, ``dim``, config already set)."""


# ---------------------------------------------------------------------- helpers
def as_float32_matrix(values: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 ``(n, dim)`` matrix of finite numbers; 1-D means one row."""
    matrix = np.asarray(values)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise InputError(f"expected a 2-D array, got shape {matrix.shape}", field=what)
    if matrix.dtype.kind not in "fiub":
        raise InputError(f"expected numbers, got dtype {matrix.dtype}", field=what)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if dim is not None and matrix.shape[1] != dim:
        raise InputError(
            f"vectors of dimension {matrix.shape[1]}, the index holds dimension {dim}", field=what
        )
    if matrix.size and not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise InputError(f"row {row} holds NaN or infinity", field=what)
    return matrix


def partition_count(configured: int | None, n_items: int, default: int) -> int:
    """The k-means partitions (IVF lists, ScaNN leaves) of a partitioned index over ``n_items``:
    ``configured`` if set, else ``default``; at least one, never more than the items."""
    return max(1, min(default if configured is None else configured, n_items))


def allowed_as_mask(allowed: Allowed, n_items: int) -> np.ndarray | None:
    """A boolean item mask from a mask or an id array; ``None`` when everything is allowed."""
    if allowed is None:
        return None
    allowed = np.asarray(allowed)
    if allowed.dtype == bool:
        if allowed.shape != (n_items,):
            raise InputError(
                f"a boolean mask needs {n_items} entries, got shape {allowed.shape}",
                field="allowed",
            )
        mask = allowed
    else:
        ids = allowed.astype(np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= n_items):
            raise InputError(f"an id lies outside 0..{n_items - 1}", field="allowed")
        mask = np.zeros(n_items, dtype=bool)
        mask[ids] = True
    return None if mask.all() else mask


def drop_excluded(
    ids: np.ndarray,
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
    allowed: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove excluded and disallowed hits from raw results, keep the best ``k``.

    ``ids`` of ``-1`` are empty slots. Returns ``(ids, scores, n_valid)``
    where ``n_valid`` counts the kept hits per row (at most ``k``); the order
    of raw hits (best first) is kept.
    """
    n_rows, fetched = ids.shape
    bad = ids < 0
    safe = np.where(bad, 0, ids)
    if allowed is not None:
        bad |= ~allowed[safe]
    if exclude is not None and exclude.nnz:
        # one key per (row, id) pair, so a single isin checks every row at once
        width = np.int64(exclude.shape[1])
        banned_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(exclude.indptr))
        banned_keys = banned_rows * width + exclude.indices
        hit_keys = np.arange(n_rows, dtype=np.int64)[:, None] * width + safe
        bad |= np.isin(hit_keys, banned_keys)
    keep = ~bad
    # a stable sort on "bad" moves the kept hits to the front, in their order
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
    kept = np.take_along_axis(keep, order, axis=1)
    out_ids = np.where(kept, out_ids, -1).astype(np.int64)
    out_scores = np.where(kept, out_scores, -np.inf).astype(np.float32)
    if out_ids.shape[1] < k:
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return out_ids, out_scores, kept.sum(axis=1)


def overfetch_search(
    raw_search: RawSearch,
    queries: np.ndarray,
    k: int,
    n_items: int,
    exclude: sp.csr_matrix | None,
    allowed: np.ndarray | None,
    *,
    first_extra: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Search with exclusions on an index that cannot filter: fetch more, drop, repeat.

    A row that must avoid ``e`` ids (its own exclusions plus the items
    ``allowed`` leaves out) first fetches ``k + min(e, max(k, first_extra))``
    hits; excluded ones are dropped, never returned. A row left with fewer than
    ``k`` hits is searched again with twice the fetch, capped at ``k + e`` (at
    which an exact search is sure to hold ``k`` allowed hits) and at
    ``n_items``, until it has ``k`` hits or the index has no more to give. Most
    rows finish in the first round; the rounds grow geometrically, so even a
    very restrictive ``allowed`` mask costs at most about twice the last fetch.

    Parameters
    ----------
    raw_search
        ``raw_search(queries, fetch) -> (ids, scores)`` without filtering;
        ids ``-1`` for empty slots, scores higher-is-better.
    queries, k, n_items, exclude, allowed
        As in :meth:`Index.search`, already normalised.
    first_extra
        Minimum extra hits fetched in the first round for rows with exclusions.
    """
    n_rows = len(queries)
    if exclude is None and allowed is None:
        ids, scores = raw_search(queries, min(k, n_items))
        return drop_excluded(ids, scores, k, None, None)[:2]
    n_disallowed = 0 if allowed is None else int(n_items - allowed.sum())
    n_banned = np.zeros(n_rows, np.int64) if exclude is None else np.diff(exclude.indptr)
    # the most a row can lose to filtering: its exclusions plus every disallowed item
    most_lost = n_banned + n_disallowed
    need = np.minimum(k + most_lost, n_items)
    fetch = np.minimum(k + np.minimum(most_lost, max(k, first_extra)), need)
    out_ids = np.full((n_rows, k), -1, np.int64)
    out_scores = np.full((n_rows, k), -np.inf, np.float32)
    pending = np.arange(n_rows)
    while len(pending):
        size = int(fetch[pending].max())
        ids, scores = raw_search(queries[pending], size)
        sub_exclude = None if exclude is None else exclude[pending]
        got_ids, got_scores, n_valid = drop_excluded(ids, scores, k, sub_exclude, allowed)
        out_ids[pending], out_scores[pending] = got_ids, got_scores
        # done: k hits, or the fetch already covered all that could be lost, or
        # the index returned fewer hits than asked (nothing more to find)
        exhausted = (ids >= 0).sum(axis=1) < size
        done = (n_valid >= k) | (size >= need[pending]) | exhausted
        pending = pending[~done]
        fetch[pending] = np.minimum(2 * size, need[pending])
    return out_ids, out_scores
