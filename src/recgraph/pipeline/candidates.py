"""Candidate retrieval and merge: each retriever proposes, the lists become one.

The second part of a question's pipeline. Every retriever of the question is
asked for its best ``candidates`` targets per user with the serving rules
already applied (:mod:`recgraph.pipeline.rules`); a candidate that scores at
or below its retriever's floor (``min_score`` in the file, else the score the
model gives what it has no evidence for, such as 0 paths) does not count. The
lists are merged by :func:`~recgraph.pipeline.merge.merge_lists`, each target
keeping the bit of every retriever that proposed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recgraph.pipeline.config import RetrieverSpec
from recgraph.retrieval.base import Retriever, top_k


@dataclass(frozen=True)
class RankedList:
    """One retriever's answer for a batch: ``(n, c)`` ids (``-1`` empty), scores, source bits."""

    ids: np.ndarray
    scores: np.ndarray
    sources: np.ndarray

    @classmethod
    def empty(cls, n: int, width: int) -> RankedList:
        return cls(
            np.full((n, width), -1, dtype=np.int64),
            np.full((n, width), -np.inf, dtype=np.float32),
            np.zeros((n, width), dtype=np.int64),
        )

    def put(self, rows: np.ndarray, part: RankedList) -> None:
        """Write ``part`` into ``rows`` (its width may be smaller)."""
        width = part.ids.shape[1]
        self.ids[rows, :width] = part.ids
        self.scores[rows, :width] = part.scores
        self.sources[rows, :width] = part.sources


def score_floor(spec: RetrieverSpec, model: Retriever) -> float | None:
    """Candidates must score above this to count: the file's ``min_score``, else the model's."""
    return spec.min_score if spec.min_score is not None else model.no_evidence_score


def propose(
    model: Retriever,
    bit: int,
    users: np.ndarray,
    count: int,
    *,
    exclude: sp.csr_matrix,
    eligible: np.ndarray | None,
    floor: float | None,
) -> RankedList:
    """``model``'s best ``count`` for known ``users``, rules applied before the cut."""
    count = max(1, min(count, model.n_items))
    ids, scores = model.recommend(
        users, count, exclude_seen=True, exclude=exclude, candidates=eligible
    )
    return _ranked(ids, scores, bit, floor)


def propose_cold(
    model: Retriever,
    bit: int,
    n_rows: int,
    count: int,
    *,
    exclude: sp.csr_matrix,
    eligible: np.ndarray | None,
) -> RankedList:
    """``model``'s own list for users it cannot personalise for (its cold-start scores);
    from its ranked head where it keeps one (popularity: ``Popular.top_of_ranked``)."""
    ranked = getattr(model, "top_of_ranked", None)
    if ranked is not None:
        quick = ranked(max(1, min(count, model.n_items)), exclude, eligible)
        if quick is not None:
            return _ranked(*quick, bit, None)
    base = np.asarray(model.cold_start_scores(), dtype=np.float32)
    block = np.repeat(base[None, :], n_rows, axis=0)
    if eligible is not None:
        block[:, ~eligible] = -np.inf
    rows = np.repeat(np.arange(n_rows), np.diff(exclude.indptr))
    block[rows, exclude.indices] = -np.inf
    ids, scores = top_k(block, max(1, min(count, len(base))))
    return _ranked(ids, scores, bit, None)


def _ranked(ids: np.ndarray, scores: np.ndarray, bit: int, floor: float | None) -> RankedList:
    if floor is not None:
        weak = scores <= floor
        if weak.any():  # (most lists of a request have none: nothing to copy)
            ids = np.where(weak, -1, ids)
            scores = np.where(weak, -np.inf, scores)
        scores = scores.astype(np.float32, copy=False)
    source = np.int64(1) << np.int64(bit)
    return RankedList(ids, scores, np.where(ids >= 0, source, np.int64(0)))
