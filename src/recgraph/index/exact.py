"""Exact search: a batched matrix product and top-k; the reference every ANN index is measured by."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.index.base import Excluded, Hits, Index, IndexConfig, Mask
from recgraph.retrieval.base import SCORE_BLOCK_FLOATS, top_k

VECTORS_FILE = "vectors.npz"


class ExactConfig(IndexConfig):
    """``block_floats`` bounds the floats of one score block (queries x items): memory stays near ``4 * block_floats`` bytes."""

    block_floats: int = Field(default=SCORE_BLOCK_FLOATS, ge=1 << 10)


class ExactIndex(Index):
    r"""Brute force: score every item for every query, keep the best ``k``.

    ``ip`` scores are :math:`q \cdot x`; ``l2`` scores are
    :math:`-\lVert q - x \rVert^2 = 2\, q \cdot x - \lVert x \rVert^2 - \lVert q \rVert^2`,
    computed from one matrix product and the precomputed item norms. Queries
    are taken in blocks and, past ``block_floats`` items, items too, so memory
    stays bounded at any size; results equal :func:`~recgraph.retrieval.base.top_k`
    on the full score matrix (ties to the lower id).
    """

    name = "exact"
    config_class = ExactConfig
    config: ExactConfig

    def _build(self, vectors: np.ndarray) -> None:
        self.vectors_ = vectors
        self.sq_norms_ = np.einsum("ij,ij->i", vectors, vectors)

    def _search(self, queries: np.ndarray, k: int, exclude: Excluded, allowed: Mask) -> Hits:
        n_queries = len(queries)
        item_step = min(self.n_items, self.config.block_floats)
        query_step = max(1, self.config.block_floats // item_step)
        ids = np.empty((n_queries, k), np.int64)
        scores = np.empty((n_queries, k), np.float32)
        for q_start in range(0, n_queries, query_step):
            q_stop = min(q_start + query_step, n_queries)
            block_ids, block_scores = None, None
            for i_start in range(0, self.n_items, item_step):
                i_stop = min(i_start + item_step, self.n_items)
                part = self._score_block(queries[q_start:q_stop], i_start, i_stop)
                _mask_block(part, q_start, q_stop, i_start, i_stop, exclude, allowed)
                part_ids, part_scores = select_top_k(part, k)
                part_ids = np.where(part_ids >= 0, part_ids + i_start, -1)
                if block_ids is None:
                    block_ids, block_scores = part_ids, part_scores
                else:
                    block_ids, block_scores = merge_top_k(
                        block_ids, block_scores, part_ids, part_scores, k
                    )
            ids[q_start:q_stop], scores[q_start:q_stop] = block_ids, block_scores
        return ids, scores

    def _score_block(self, queries: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Scores of ``queries`` against items ``start:stop`` (higher is better)."""
        items = self.vectors_[start:stop]
        if len(queries) == 1:  # a matrix-vector product: no threads to wake for one row
            block = (items @ queries[0])[None, :]
        else:
            block = queries @ items.T
        if self.metric == "l2":
            q_norms = np.einsum("ij,ij->i", queries, queries)
            block *= 2.0
            block -= self.sq_norms_[start:stop][None, :]
            block -= q_norms[:, None]
            np.minimum(block, 0.0, out=block)  # a distance is never negative
        return block

    def _save_state(self, path: Path) -> None:
        np.savez(path / VECTORS_FILE, vectors=self.vectors_)

    def _load_state(self, path: Path) -> None:
        with np.load(path / VECTORS_FILE, allow_pickle=False) as data:
            self._build(np.ascontiguousarray(data["vectors"], dtype=np.float32))


def _mask_block(
    block: np.ndarray,
    q_start: int,
    q_stop: int,
    i_start: int,
    i_stop: int,
    exclude: sp.csr_matrix | None,
    allowed: np.ndarray | None,
) -> None:
    """Set ``-inf`` on the excluded and disallowed cells of one score block (in place)."""
    if allowed is not None:
        block[:, ~allowed[i_start:i_stop]] = -np.inf
    if exclude is not None:
        rows = exclude[q_start:q_stop]
        row_of = np.repeat(np.arange(q_stop - q_start), np.diff(rows.indptr))
        cols = rows.indices
        inside = (cols >= i_start) & (cols < i_stop)
        block[row_of[inside], cols[inside] - i_start] = -np.inf


def select_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~recgraph.retrieval.base.top_k`, made fast on wide rows by a sampled threshold.

    The ``k``-th best score of a column sample is a lower bound of the row's
    ``k``-th best, so every top-``k`` cell scores at least that much; only those
    few candidates (ties included) go through ``top_k``, whose result is thus
    unchanged (same ids, same tie-break to the lower id), at the cost of one
    comparison pass instead of a full partition of the row.
    """
    n_rows, n_cols = scores.shape
    if n_cols <= 64 * k + 4096 or n_rows == 0:
        return top_k(scores, k)
    stride = max(1, n_cols // (16 * k + 1024))
    sample = scores[:, ::stride]
    threshold = -np.partition(-sample, k - 1, axis=1)[:, k - 1]
    # rows whose sample's k-th best is -inf hold too few finite scores: no shortcut
    full = ~np.isfinite(threshold)
    ids = np.full((n_rows, k), -1, np.int64)
    out = np.full((n_rows, k), -np.inf, np.float32)
    if full.any():
        ids[full], out[full] = top_k(scores[full], k)
    fast = np.flatnonzero(~full)
    if len(fast):
        sub = scores if len(fast) == n_rows else scores[fast]
        candidate = sub >= threshold[fast, None]
        rows, cols = np.nonzero(candidate)  # row-major: columns ascend within a row
        counts = np.bincount(rows, minlength=len(fast))
        width = int(counts.max())
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        slots = np.arange(len(rows)) - np.repeat(starts, counts)
        packed_cols = np.zeros((len(fast), width), np.int64)
        packed = np.full((len(fast), width), -np.inf, np.float32)
        packed_cols[rows, slots] = cols
        packed[rows, slots] = sub[rows, cols]
        local, best = top_k(packed, k)
        chosen = np.take_along_axis(packed_cols, np.maximum(local, 0), axis=1)
        ids[fast] = np.where(local >= 0, chosen, -1)
        out[fast] = best
    return ids, out


def merge_top_k(
    ids_a: np.ndarray,
    scores_a: np.ndarray,
    ids_b: np.ndarray,
    scores_b: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of two result lists per row; ties to the lower id, empty slots last."""
    ids = np.concatenate([ids_a, ids_b], axis=1)
    scores = np.concatenate([scores_a, scores_b], axis=1)
    tie_ids = np.where(ids >= 0, ids, np.iinfo(np.int64).max)
    order = np.lexsort((tie_ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
