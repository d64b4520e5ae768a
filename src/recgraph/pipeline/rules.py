"""Exclusion and eligibility: what no answer may hold, applied before any list is cut.

Whatever retrievers a question has, and whether they or the fallback chain
answer, these rules hold for every result:

- nothing the user already has (follows, likes, views, ratings) nor anything
  they disliked comes back, nor the user itself on an account graph;
- nothing that arrived after training (``exclude``: feedback the service
  reads from the store at request time);
- never a user's own post on a feed;
- only what is eligible: within the freshness window (``max_age_days``), and
  within ``allowed`` (an evaluation's candidate set) when given.

They are handed to each retriever as ``exclude`` and ``candidates`` so that
they apply *before* its top-k cut: a filter after the cut would return fewer
than ``k`` results whenever the best ones were excluded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import DAY as SECONDS_PER_DAY
from recgraph.pipeline.config import QuestionConfig
from recgraph.pipeline.history import History
from recgraph.retrieval.base import rows_as_csr

Exclude = sp.spmatrix | Sequence[Sequence[int]] | None


def fresh_items(created: np.ndarray, now: float, max_age_days: float) -> np.ndarray:
    """Boolean mask of targets created within ``max_age_days`` before ``now`` (NaN: not eligible)."""
    created = np.asarray(created, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (created >= now - max_age_days * SECONDS_PER_DAY) & (created <= now)


class ServingRules:
    """The exclusion and eligibility rules of one question (see the module docstring)."""

    def __init__(self, history: History, config: QuestionConfig) -> None:
        self.history = history
        self.config = config
        if config.max_age_days is not None and history.item_created_at is None:
            from recgraph.errors import ConfigError

            raise ConfigError("max_age_days needs item creation times (items.created_at)")

    def cold(self, users: np.ndarray) -> np.ndarray:
        """Per user: unknown, or with fewer training interactions than the question asks."""
        known = users >= 0
        counts = np.zeros(len(users), dtype=np.int64)
        counts[known] = self.history.counts[users[known]]
        return ~known | (counts < self.config.cold_start_min_interactions)

    def eligible(
        self, *, now: float | None = None, allowed: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Boolean mask of the targets any user may get, or ``None`` for all of them."""
        mask = None
        if self.config.max_age_days is not None:
            assert self.history.item_created_at is not None
            now = time.time() if now is None else now
            mask = fresh_items(self.history.item_created_at, now, self.config.max_age_days)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.history.n_targets,):
                raise ValueError(f"allowed needs one entry per target ({self.history.n_targets})")
            mask = allowed if mask is None else mask & allowed
        return mask

    def request_exclusions(self, users: np.ndarray, exclude: Exclude) -> sp.csr_matrix:
        """``(len(users), n_targets)``: the request's exclusions and each user's own posts.

        Retrievers remove what they were trained on themselves (``exclude_seen``);
        this is everything else.
        """
        n, width = len(users), self.history.n_targets
        own = self.history.own
        if (
            n == 1
            and (exclude is None or (not sp.issparse(exclude) and len(exclude) == 1))
            and (own is None or users[0] < 0)
        ):
            # a request's one user: its sorted distinct ids are the binary row itself (the
            # general path builds, copies and sorts a matrix for the same entries)
            if exclude is None or not len(exclude[0]):
                return self._no_exclusions()
            cols = np.unique(np.asarray(exclude[0], np.int64))
            return sp.csr_matrix(
                (np.ones(len(cols), np.float32), cols, np.array([0, len(cols)])), shape=(1, width)
            )
        blocked = rows_as_csr(exclude, n, width, "exclude")
        if blocked is None:
            blocked = sp.csr_matrix((n, width), dtype=np.float32)
        if own is not None and (users >= 0).any():
            blocked = blocked + _rows(own, users)
        return _binary(blocked)

    def _no_exclusions(self) -> sp.csr_matrix:
        """One user's empty exclusion row, built once (a request without exclusions: most of
        them) and read-only, so that no caller can change what the next request gets. Its
        arrays refuse writes; the matrix object is shared all the same: never ``resize`` it or
        call an in-place method (``eliminate_zeros``, ``sum_duplicates``) on it."""
        width = self.history.n_targets
        empty = self.__dict__.get("_empty_row")
        if empty is None or empty.shape[1] != width:  # (the targets grow with new data)
            arrays = np.ones(0, np.float32), np.zeros(0, np.int32), np.zeros(2, np.int32)
            for array in arrays:
                array.flags.writeable = False
            empty = sp.csr_matrix(arrays, shape=(1, width))
            self.__dict__["_empty_row"] = empty
        return empty

    def with_history(self, users: np.ndarray, blocked: sp.csr_matrix) -> sp.csr_matrix:
        """``blocked`` plus what each user had in training and, on account graphs, the user.

        For lists that know nothing of the user (cold-start scores), which
        cannot leave out the user's history themselves.
        """
        blocked = blocked + _rows(self.history.seen, users)
        if self.history.one_sided:
            known = np.flatnonzero(users >= 0)
            blocked = blocked + sp.csr_matrix(
                (np.ones(len(known), np.float32), (known, users[known])), shape=blocked.shape
            )
        return _binary(blocked)


def _rows(matrix: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    """Rows of ``matrix`` for ``users``, empty rows for ``-1``."""
    rows = matrix[np.maximum(users, 0)].tocsr()
    unknown = np.flatnonzero(users < 0)
    if len(unknown):
        keep = np.ones(len(users), dtype=np.float32)
        keep[unknown] = 0.0
        rows = sp.diags(keep) @ rows
        rows.eliminate_zeros()
    return sp.csr_matrix(rows)


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
