"""The retriever protocol every stage-1 candidate generator implements.

Batch first, as in ``implicit``: one user is a batch of one. A model

- subclasses :class:`Retriever`, names itself (``name``) and its typed config
  (``config_class``, a :class:`RetrieverConfig`);
- learns in ``_fit(train)`` and either scores whole rows in
  ``_score(users)`` (dense ``(len(users), n_items)``), or overrides
  ``recommend`` and uses :meth:`_mask_scores` and :func:`top_k`;
- puts its learned arrays in ``_state()`` and takes them back in
  ``_set_state()``, so that ``save``/``load`` never need pickle.

The base class remembers what each user already has (``seen``), which
``recommend(exclude_seen=True)`` removes along with the user itself on
account graphs, and dislikes always.

What callers may use beyond ``recommend`` is declared here, with defaults, so
that no caller reads a model's private attributes:

- :meth:`seen_matrix` / :meth:`seen_items`: the history the model was fitted on;
- :meth:`cold_start_scores`: what a user with no history gets (popularity,
  or a learnt item bias);
- :meth:`similar_items`: targets like a given one (item vectors, an item
  similarity, or co-occurrence);
- :meth:`score_pairs`: the score of given (user, target) pairs, which a
  stage-2 ranker reads as a feature;
- :meth:`explain` (when ``explains`` is true): one
  :class:`~recgraph.retrieval.explanation.Explanation` per candidate.

Saved models are loaded by name through :func:`Retriever.load`; the registry
(:mod:`recgraph.retrieval.registry`) installs the name lookup, so this module
never imports it.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from recgraph.data.graph_csr import (
    binary_csr_files,
    link_or_copy,
    load_binary_csr,
    same_file,
    save_binary_csr,
)
from recgraph.data.interactions import IdMap, Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.data.sorted_keys import in_sorted
from recgraph.data.sparse_rows import pad_rows, row_entries
from recgraph.errors import ConfigError, InputError, NotFittedError
from recgraph.files import (
    csr_from_arrays,
    load_arrays,
    save_arrays,
    saved_folder,
)
from recgraph.lazy_registry import open_saved, saved_header
from recgraph.retrieval.explanation import Explanation
from recgraph.settings import validated_config

#: 2: what the model had (seen, liked) and its id maps are ``.npy`` files beside
#: ``state.npz``, memory-mapped on load; format 1 (all in ``state.npz``) still loads.
FORMAT_VERSION = 2
#: Earlier formats :meth:`Retriever.load` still reads (1: the history inside the npz).
ALSO_READS: tuple[int, ...] = (1,)
CONFIG_FILE = "model.json"
STATE_FILE = "state.npz"
#: Upper bound on the floats of one dense score block (``batch x n_items``).
SCORE_BLOCK_FLOATS = 1 << 24
#: Most float32 bytes of dense score blocks one :func:`shared_scores` scope keeps.
SHARED_SCORE_BYTES = 1 << 24
#: The open :func:`shared_scores` scope of this thread: ``{(model id, users): block}``.
_SHARED: ContextVar[dict[tuple[int, bytes], np.ndarray] | None] = ContextVar(
    "recgraph_shared_scores", default=None
)


@contextmanager
def shared_scores() -> Iterator[None]:
    """Within this block, a model's dense scores of one batch of users are computed once.

    A ranked request asks each retriever for its best candidates
    (:meth:`Retriever.recommend`) and then for its scores of the pool's other
    candidates (:meth:`Retriever.score_pairs`): the same ``_score`` rows twice,
    which for EASE and item k-NN was most of a request's retrieval. Inside the
    scope the second call reads the first's block (the same values: ``_score``
    of the same users). Per thread (a context variable), never past the block,
    and bounded by :data:`SHARED_SCORE_BYTES` (larger blocks are not kept).
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


class RetrieverConfig(BaseModel):
    """Base of every model's config: typed, validated, JSON/TOML round-trippable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: Objects already saved or loaded with their files, by role (``seen``, ``users``, ``items``):
#: ``{role: (object, [files])}`` (see :meth:`Retriever.save` and :meth:`Retriever.load`).
SharedFiles = Mapping[str, tuple[Any, list[Path]]]

#: ``(ids, scores)`` of shape ``(n_users, k)``, best first; empty slots ``-1`` / ``-inf``.
TopK = tuple[np.ndarray, np.ndarray]


def _warm_kernels(module: str, flag: str):
    """The kernels ``module`` once a loaded model or ranking stage has compiled the kernel its
    ``flag`` marks, else None: a process that serves no compiled model never imports numba
    for them."""
    kernels = sys.modules.get(module)
    return kernels if kernels is not None and getattr(kernels, flag) else None


def compiled_top_row():
    """:func:`~recgraph.retrieval.walk_kernels.top_row` (the same answers as :func:`top_k`
    for one masked row) once compiled, else None (see :func:`_warm_kernels`)."""
    kernels = _warm_kernels("recgraph.retrieval.walk_kernels", "TOP_ROW_WARM")
    return kernels.top_row if kernels is not None else None


def compiled_masked_top():
    """:func:`~recgraph.retrieval.score_kernels.masked_top` once compiled, else None."""
    kernels = _warm_kernels("recgraph.retrieval.score_kernels", "MASKED_TOP_WARM")
    return kernels.masked_top if kernels is not None else None


def top_k(scores: np.ndarray, k: int) -> TopK:
    """Best ``k`` columns per row, best first; ties go to the lower index.

    Entries of ``-inf`` are never returned: their slots hold id ``-1`` and
    score ``-inf``. Deterministic, so a row scores the same alone or in a batch.
    """
    scores = np.asarray(scores, dtype=np.float32)
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    out = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if k_eff == 0 or n_rows == 0:
        return ids, out
    if k_eff < n_cols:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        greater = scores > kth[:, None]
        equal = scores == kth[:, None]
        need = k_eff - greater.sum(axis=1)
        take = greater | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))
        rows, cols = np.nonzero(take)
        chosen = cols.reshape(n_rows, k_eff)
    else:
        chosen = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    chosen_scores = np.take_along_axis(scores, chosen, axis=1)
    order = np.lexsort((chosen, -chosen_scores), axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    chosen_scores = np.take_along_axis(chosen_scores, order, axis=1)
    valid = chosen_scores > -np.inf
    ids[:, :k_eff] = np.where(valid, chosen, -1)
    out[:, :k_eff] = np.where(valid, chosen_scores, -np.inf)
    return ids, out


def rows_as_csr(
    rows: sp.spmatrix | Sequence[Sequence[int]] | None, n_rows: int, n_cols: int, what: str
) -> sp.csr_matrix | None:
    """Per-user id lists or a sparse matrix, as a CSR of shape ``(n_rows, n_cols)``."""
    if rows is None:
        return None
    if isinstance(rows, sp.csr_matrix):
        matrix = rows  # read only, as it is (a request's exclusions: once per retriever)
    elif sp.issparse(rows):
        matrix = sp.csr_matrix(rows)
    else:
        if len(rows) != n_rows:
            raise ValueError(f"{what} has {len(rows)} rows, expected one per user ({n_rows})")
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        indices = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if indptr[-1]
            else np.zeros(0, np.int64)
        )
        matrix = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(n_rows, n_cols)
        )
    if matrix.shape != (n_rows, n_cols):
        raise ValueError(f"{what} has shape {matrix.shape}, expected {(n_rows, n_cols)}")
    return matrix


@dataclass(frozen=True)
class Request:
    """A recommend call's filters, checked and normalised once by :meth:`Retriever.recommend`.

    ``exclude`` has one CSR row per requested user (or is None); ``allowed``
    is a boolean item mask, a CSR with a row per user, or None.
    """

    exclude_seen: bool
    exclude: sp.csr_matrix | None
    allowed: np.ndarray | sp.csr_matrix | None

    def rows(self, start: int, stop: int) -> Request:
        """The filters of users ``start:stop`` of the request (for batches)."""
        if start == 0 and (self.exclude is None or stop == self.exclude.shape[0]):
            if not sp.issparse(self.allowed) or stop == self.allowed.shape[0]:
                return self  # one block holds the whole request (always, for one user)
        allowed = self.allowed[start:stop] if sp.issparse(self.allowed) else self.allowed
        exclude = None if self.exclude is None else self.exclude[start:stop]
        return Request(self.exclude_seen, exclude, allowed)


class Retriever(ABC):
    """Stage-1 candidate generator: ``fit`` once, ``recommend`` for batches of users."""

    #: Name used by ``recgraph evaluate --model`` and in saved manifests.
    name: ClassVar[str]
    config_class: ClassVar[type[RetrieverConfig]] = RetrieverConfig
    #: Which graph shapes the model handles: ``items``, ``follows``, ``friends``.
    supports: ClassVar[frozenset[str]] = frozenset({"items", "follows", "friends"})
    #: Whether :meth:`explain` can say why (the default says nothing).
    explains: ClassVar[bool] = False
    #: Whether ``fit`` reads item side data (titles, genres) from ``item_features``.
    uses_item_features: ClassVar[bool] = False
    #: Whether :meth:`cold_start_scores` is an answer of the model's own (popularity,
    #: a learnt item bias) that may be credited to it for a user it never saw.
    has_cold_start: ClassVar[bool] = False
    #: The score the model gives a target it has no evidence for (two-hop models:
    #: 0, no path): such candidates never count as the model's.
    no_evidence_score: ClassVar[float | None] = None
    #: Saved-name -> class lookup, installed by :mod:`recgraph.retrieval.registry`.
    class_for_name: ClassVar[Callable[[str], type[Retriever]] | None] = None
    #: What training did (models trained in rounds: epochs, validation, seconds), saved in
    #: ``model.json`` as ``training``; ``None``: the model has no such summary.
    training_: dict[str, Any] | None = None

    def __init__(
        self, config: RetrieverConfig | Mapping[str, Any] | None = None, **params: Any
    ) -> None:
        self.config = validated_config(self.config_class, config, params, name=self.name)
        self._seen: sp.csr_matrix | None = None
        self._liked: sp.csr_matrix | None = None
        self._popularity: np.ndarray | None = None
        self.users: IdMap | None = None
        self.items: IdMap | None = None
        self.graph_kind: str | None = None
        self.item_features: ItemFeatures | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------ training
    def fit(self, train: Interactions, item_features: ItemFeatures | None = None) -> Self:
        """Learn from ``train`` (dislikes are kept out of learning, but remembered as seen).

        ``item_features`` (titles, genres, creation times, from the store's
        items table or ``recgraph evaluate --items``) reach the models that
        read them (``uses_item_features``) as ``self.item_features``, lined up
        with ``train.items``; the others ignore them.
        """
        if train.graph_kind not in self.supports:
            raise ConfigError(
                f"model {self.name!r} does not handle {train.graph_kind} data "
                f"(it handles: {', '.join(sorted(self.supports))})"
            )
        self._remember(train)
        self.item_features = (
            item_features.aligned(train.items)
            if item_features is not None and self.uses_item_features
            else None
        )
        self._fit(train)
        return self

    def partial_fit(self, new: Interactions) -> Self:
        """Continue training on new interactions; not every model can."""
        raise NotImplementedError(f"model {self.name!r} has no incremental training; call fit")

    def _remember(self, train: Interactions) -> None:
        """Keep what users had: ``train.seen()`` itself (the matrix the question's history
        and its other retrievers hold too, not a copy), what they liked where that differs
        (``None``: the same as seen), and the popularity counts."""
        self.users, self.items = train.users, train.items
        self.graph_kind = train.graph_kind
        self._seen = train.seen()
        liked = train.liked()
        self._liked = None if liked.all() else train.subset(liked).csr("binary")
        self._popularity = _positive_counts(train)

    @abstractmethod
    def _fit(self, train: Interactions) -> None:
        """Learn the model's state from ``train``."""

    # ------------------------------------------------------------------ inference
    @property
    def n_users(self) -> int:
        self._check_fitted()
        assert self._seen is not None
        return self._seen.shape[0]

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self._seen is not None
        return self._seen.shape[1]

    @property
    def is_fitted(self) -> bool:
        return self._seen is not None

    def _check_fitted(self) -> None:
        if self._seen is None:
            raise NotFittedError(f"model {self.name!r} is not fitted: call fit() or load()")

    def _check_users(self, users: Sequence[int] | np.ndarray | int) -> np.ndarray:
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.ndim != 1:
            raise ValueError("users must be a 1-D array of user indices")
        if len(users) and (users.min() < 0 or users.max() >= self.n_users):
            bad = users[(users < 0) | (users >= self.n_users)][0]
            raise IndexError(f"user index {bad} is outside 0..{self.n_users - 1}")
        return users

    def _score(self, users: np.ndarray) -> np.ndarray:
        """Dense scores ``(len(users), n_items)``; higher is better."""
        raise NotImplementedError(f"{type(self).__name__} must implement _score or recommend")

    def _dense_scores(self, users: np.ndarray) -> np.ndarray:
        """``_score(users)`` as float32, read from the open :func:`shared_scores` scope when
        it holds these users' block (and kept there when small enough)."""
        shared = _SHARED.get()
        if shared is None:
            return np.asarray(self._score(users), dtype=np.float32)
        key = (id(self), np.asarray(users, dtype=np.int64).tobytes())
        block = shared.get(key)
        if block is None:
            block = np.asarray(self._score(users), dtype=np.float32)
            kept = sum(b.nbytes for b in shared.values())
            if kept + block.nbytes <= SHARED_SCORE_BYTES:
                shared[key] = block
        return block

    def batch_size(self) -> int:
        """Users per dense score block, so a block stays near 64 MB."""
        return max(1, SCORE_BLOCK_FLOATS // max(1, self.n_items))

    def recommend(
        self,
        users: Sequence[int] | np.ndarray | int,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: sp.spmatrix | Sequence[Sequence[int]] | None = None,
        candidates: np.ndarray | Sequence[int] | sp.spmatrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` targets for each of ``users``.

        Parameters
        ----------
        users
            User indices (train id map).
        k
            How many per user.
        exclude_seen
            Drop what the user already has in train (dislikes included), and on
            account graphs the user itself.
        exclude
            More targets to drop: a sparse matrix with one row per user in
            ``users``, or one id list per user.
        candidates
            Targets allowed: one id array for all users, or a sparse matrix with
            a row per user (nonzero = allowed).

        Returns
        -------
        ids, scores
            Arrays of shape ``(len(users), k)``, best first. Slots with no
            candidate left hold id ``-1`` and score ``-inf``.
        """
        users = self._check_users(users)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        request = Request(
            exclude_seen,
            rows_as_csr(exclude, len(users), self.n_items, "exclude"),
            self._allowed(candidates, len(users)),
        )
        return self._recommend(users, k, request)

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """:meth:`recommend` for checked users and filters; by default dense blocks of
        :meth:`_score`. Models with sparse or walk-based scores override this."""
        ids = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float32)
        step = self.batch_size()
        for start in range(0, len(users), step):
            stop = min(start + step, len(users))
            batch = users[start:stop]
            part = request.rows(start, stop)
            dense = self._dense_scores(batch)  # scored once, whichever path cuts it
            if stop - start == 1:
                one = self._masked_top_one(dense[0], int(batch[0]), k, part)
                if one is not None:  # a request: masked and cut in one compiled call
                    ids[start], scores[start] = one
                    continue
            block = np.array(dense, dtype=np.float32, copy=True)
            self._mask_scores(
                block,
                batch,
                exclude_seen=part.exclude_seen,
                exclude=part.exclude,
                allowed=part.allowed,
            )
            top_row = compiled_top_row() if len(block) == 1 else None
            if top_row is not None:  # a request: the same top k, compiled
                ids[start], scores[start] = top_row(block[0], k)
            else:
                ids[start:stop], scores[start:stop] = top_k(block, k)
        return ids, scores

    def _masked_top_one(
        self, row: np.ndarray, user: int, k: int, request: Request
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """One user's top ``k`` of its dense ``row`` masked as :meth:`_mask_scores` masks it,
        by :func:`~recgraph.retrieval.score_kernels.masked_top` once a loaded model or ranking
        stage compiled it; ``None`` where it is not compiled in this process or the arrays
        are not the kinds it was compiled for (the general path answers)."""
        cut = compiled_masked_top()
        allowed = request.allowed
        if (
            cut is None
            or sp.issparse(allowed)
            or row.dtype != np.float32
            or not row.flags.c_contiguous
            or not row.flags.writeable
        ):
            return None
        assert self._seen is not None
        seen = self._seen
        if request.exclude_seen:
            seen_row = np.array(seen.indices[seen.indptr[user] : seen.indptr[user + 1]], np.int64)
            self_index = user if self.graph_kind in ("follows", "friends") else -1
        else:
            seen_row, self_index = np.zeros(0, np.int64), -1
        exclude = request.exclude
        if exclude is None:
            extra = np.zeros(0, np.int64)
        else:
            extra = np.array(exclude.indices[exclude.indptr[0] : exclude.indptr[1]], np.int64)
        if allowed is None:
            mask = np.zeros(0, bool)
        else:
            mask = np.array(allowed, dtype=bool)  # a writable copy: the compiled kind
            if mask.shape != row.shape:
                return None
        return cut(row, seen_row, np.int64(self_index), extra, mask, k)

    def _allowed(
        self, candidates: np.ndarray | Sequence[int] | sp.spmatrix | None, n_rows: int
    ) -> np.ndarray | sp.csr_matrix | None:
        """Normalise ``candidates`` to a boolean item mask or a per-user CSR."""
        if candidates is None:
            return None
        if sp.issparse(candidates):
            return rows_as_csr(candidates, n_rows, self.n_items, "candidates")
        candidates = np.asarray(candidates)
        if candidates.dtype == bool:
            if candidates.shape != (self.n_items,):
                raise ValueError(f"a boolean candidates mask needs {self.n_items} entries")
            return candidates
        mask = np.zeros(self.n_items, dtype=bool)
        candidates = candidates.astype(np.int64)
        if len(candidates) and (candidates.min() < 0 or candidates.max() >= self.n_items):
            raise IndexError("candidate id outside the item range")
        mask[candidates] = True
        return mask

    def _mask_scores(
        self,
        block: np.ndarray,
        users: np.ndarray,
        *,
        exclude_seen: bool,
        exclude: sp.csr_matrix | None,
        allowed: np.ndarray | sp.csr_matrix | None,
    ) -> None:
        """Set ``-inf`` on every target a user must not get (in place)."""
        assert self._seen is not None
        block[np.isnan(block)] = -np.inf
        if exclude_seen:
            entries, rows = row_entries(self._seen, users)
            block[rows, self._seen.indices[entries]] = -np.inf
            if self.graph_kind in ("follows", "friends"):
                block[np.arange(len(users)), users] = -np.inf
        if exclude is not None:
            rows = np.repeat(np.arange(len(users)), np.diff(exclude.indptr))
            block[rows, exclude.indices] = -np.inf
        if allowed is not None:
            if sp.issparse(allowed):
                keep = allowed.toarray().astype(bool)
                block[~keep] = -np.inf
            else:
                block[:, ~allowed] = -np.inf

    def forbidden(
        self, users: np.ndarray, exclude_seen: bool = True, exclude: sp.csr_matrix | None = None
    ) -> sp.csr_matrix | None:
        """Targets these users must not get, one CSR row each (None when nothing is):
        what they have (``exclude_seen``), themselves on account graphs, and ``exclude``."""
        assert self._seen is not None
        parts = [] if exclude is None else [exclude]
        if exclude_seen:
            parts.append(self._seen[users])
            if self.graph_kind in ("follows", "friends"):
                rows = np.arange(len(users))
                self_rows = (np.ones(len(users), np.float32), (rows, users))
                parts.append(sp.csr_matrix(self_rows, shape=(len(users), self.n_items)))
        if not parts:
            return None
        # a copy even of a single part: the caller's rows (a shared read-only one, say) stay
        # as they were
        total = sp.csr_matrix(sum(parts[1:], parts[0]), dtype=np.float32, copy=len(parts) == 1)
        total.data[:] = 1.0
        return total

    def seen_items(self, user: int) -> np.ndarray:
        """Targets ``user`` already has in train."""
        self._check_fitted()
        assert self._seen is not None
        return self._seen[int(user)].indices.copy()

    def liked_items(self, user: int) -> np.ndarray:
        """Targets ``user`` liked in train (:meth:`Interactions.liked`): what a reason may cite."""
        self._check_fitted()
        liked = self._liked if self._liked is not None else self._seen
        assert liked is not None
        user = int(user)
        if user >= liked.shape[0]:
            return np.zeros(0, np.int64)
        return liked.indices[liked.indptr[user] : liked.indptr[user + 1]].copy()

    def liked_weights(self, user: int, matrix: sp.csr_matrix) -> tuple[int, np.ndarray, np.ndarray]:
        """The checked ``user`` index, and the liked items in its ``matrix`` row with their
        weights: what an item-to-item explanation may cite, and how much each counts."""
        n_users, user = self.n_users, int(user)  # not fitted: NotFittedError, as before
        if not 0 <= user < n_users:  # :meth:`_check_users`'s check, for one user
            raise IndexError(f"user index {user} is outside 0..{n_users - 1}")
        start, stop = matrix.indptr[user], matrix.indptr[user + 1]
        indices, data = matrix.indices[start:stop], matrix.data[start:stop]
        row, liked = self.liked_items(user), self._liked if self._liked is not None else self._seen
        sorted_row = liked is not None and liked.has_sorted_indices  # one search, no np.isin
        keep = in_sorted(row, indices) if sorted_row else np.isin(indices, row)
        return user, indices[keep], data[keep]

    def seen_matrix(self) -> sp.csr_matrix:
        """Binary ``n_users x n_items``: what each user had in training (dislikes included)."""
        self._check_fitted()
        assert self._seen is not None
        return self._seen

    def _extend_history(self, new: Interactions) -> None:
        """Add ``new`` (already on the grown id maps) to what users have, after incremental training."""
        assert self._seen is not None
        padded = pad_rows(self._seen, new.n_users, new.n_items)
        merged = (padded + new.seen()).tocsr()
        merged.data[:] = 1.0
        merged.sort_indices()
        liked = new.positives().csr("binary")
        new_liked = new.liked()
        if self._liked is not None or not new_liked.all():
            # ``None`` meant "as seen": kept so only while every new row is liked too
            before = self._liked if self._liked is not None else self._seen
            grown = (
                pad_rows(before, new.n_users, new.n_items) + new.subset(new_liked).csr("binary")
            ).tocsr()
            grown.data[:] = 1.0
            grown.sort_indices()
            self._liked = grown
        self._seen = merged
        fresh = liked - liked.multiply(padded)
        fresh.eliminate_zeros()
        popularity = np.zeros(new.n_items, np.float32)
        before = self._base_popularity()
        popularity[: len(before)] = before
        self._popularity = popularity + np.diff(sp.csc_matrix(fresh).indptr).astype(np.float32)

    # ------------------------------------------------------------------ capabilities
    def cold_start_scores(self) -> np.ndarray:
        """Per target, what a user without history gets: here, how many users had it (not disliked).

        Models with a better notion (a learnt item bias, a recent-popularity
        window) override it.
        """
        self._check_fitted()
        return self._base_popularity()

    def _base_popularity(self) -> np.ndarray:
        if self._popularity is None:  # saved before popularity was kept: count the seen matrix
            assert self._seen is not None
            self._popularity = np.diff(sp.csc_matrix(self._seen).indptr).astype(np.float32)
        return self._popularity

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Targets most like target ``item``: ``(ids, scores, method)``, best first.

        ``method`` says how: ``vectors`` (cosine of :meth:`item_vectors`) when
        the model embeds items, else ``co-occurrence`` (cosine of the sets of
        users who have each target). Models with an item similarity override it.
        """
        self._check_fitted()
        vectors = self.item_vectors()
        if vectors is not None:
            vectors = np.asarray(vectors, dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1)
            norms[norms == 0] = 1.0
            row = (vectors @ vectors[item]) / (norms * norms[item])
            method = "vectors"
        else:
            seen = self.seen_matrix()
            columns = sp.csc_matrix(seen)
            counts = np.diff(columns.indptr).astype(np.float32)
            users = columns.indices[columns.indptr[item] : columns.indptr[item + 1]]
            both = np.asarray(seen[users].sum(axis=0), dtype=np.float32).ravel()
            with np.errstate(divide="ignore", invalid="ignore"):
                row = both / np.sqrt(counts * max(counts[item], 1.0))
            row[both == 0] = -np.inf
            method = "co-occurrence"
        return (*ranked_row(row, item, k), method)

    def score_pairs(
        self, users: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """The model's score of each pair ``(users[i], targets[i])`` (floats; NaN: no score).

        What a stage-2 ranker reads as a feature for candidates this model did
        not propose. The default scores the rows of the distinct users densely;
        models without dense rows (graph walks, two-hop products) override it.
        """
        users, targets = self._check_pairs(users, targets)
        if len(users) and (users == users[0]).all():
            # a request's pairs (one user): its one row, read where the pairs point
            return np.asarray(self._dense_scores(users[:1])[0, targets], dtype=np.float32)
        out = np.empty(len(users), dtype=np.float32)
        distinct, row_of = np.unique(users, return_inverse=True)
        step = self.batch_size()
        for start in range(0, len(distinct), step):
            batch = distinct[start : start + step]
            block = self._dense_scores(batch)
            pick = (row_of >= start) & (row_of < start + len(batch))
            out[pick] = block[row_of[pick] - start, targets[pick]]
        return out

    def _check_pairs(
        self, users: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``users`` and ``targets`` as int64 arrays of equal length, every index in range."""
        users = self._check_users(users)
        targets = np.asarray(targets, dtype=np.int64)
        if users.shape != targets.shape:
            raise ValueError("users and targets differ in length")
        if len(targets) and (targets.min() < 0 or targets.max() >= self.n_items):
            raise IndexError("target index outside the item range")
        return users, targets

    def history_via(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[list[int]] | None:
        """Per candidate, the history items :meth:`explain` would cite (its ``via`` where the
        contribution is positive), without building explanations: what a served reason needs.

        ``None`` (the default): this model cannot say more cheaply; ask :meth:`explain`.
        """
        return None

    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """One :class:`Explanation` per candidate: the history entries behind it, best first.

        The default cannot say (empty ``via``); models that can set ``explains``.
        """
        self._check_fitted()
        assert self.users is not None and self.items is not None
        user = int(self._check_users([user])[0])
        empty = np.zeros(0, dtype=np.int64)
        return [
            Explanation(
                user=user,
                user_id=str(self.users.ids[user]),
                candidate=int(c),
                candidate_id=str(self.items.ids[int(c)]),
                score=0.0,
                via=empty,
                via_ids=np.zeros(0, dtype=str),
                contributions=np.zeros(0, dtype=np.float64),
                relation="",
            )
            for c in np.asarray(candidates, dtype=np.int64)
        ]

    # ------------------------------------------------------------------ embeddings
    def user_vectors(self) -> np.ndarray | None:
        """User embeddings for an index, for models that have them."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings for an index, for models that have them."""
        return None

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (numeric or unicode; never objects)."""
        return {}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Take back what ``_state`` returned (models with learned arrays override it)."""
        return None

    def manifest(self) -> dict[str, Any]:
        """What ``model.json`` holds: name, format version, config, and the training summary."""
        header = saved_header("model", self.name, self.config, FORMAT_VERSION)
        manifest = {
            **header,
            "graph_kind": self.graph_kind,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        if self.training_ is not None:
            manifest["training"] = self.training_
        return manifest

    def save(self, path: str | os.PathLike, *, shared: SharedFiles | None = None) -> Path:
        """Write ``model.json``, ``state.npz`` and the history as ``.npy`` into the folder ``path``.

        What the model had (``seen``, ``liked`` where it differs) is saved as
        plain ``.npy`` arrays (:func:`~recgraph.data.graph_csr.save_binary_csr`)
        and the id maps as ``ids.users.npy`` / ``ids.items.npy``, memory-mapped
        on load. ``shared`` names files already written for the same objects
        (a question's history: ``{"seen": (matrix, files), "users": (ids, file)}``):
        when the model holds that very object, its file is a hard link to
        them, so a question keeps one copy of its seen matrix on disk and in
        the page cache, and :meth:`load` can hand the history's object back.
        """
        self._check_fitted()
        with saved_folder(path, CONFIG_FILE, self.manifest) as folder:
            self._write_folder(folder, shared or {})
        return folder

    def _write_folder(self, path: Path, shared: SharedFiles) -> None:
        """Everything :meth:`save` writes but the manifest, into the existing folder ``path``."""
        assert self._seen is not None and self.users is not None and self.items is not None
        own = {
            "seen": (self._seen, binary_csr_files(path, "seen")),
            "users": (self.users, [path / "ids.users.npy"]),
        }
        if self.items is not self.users:
            own["items"] = (self.items, [path / "ids.items.npy"])
        else:  # load reads items from the file whenever it exists: no stale one may stay
            (path / "ids.items.npy").unlink(missing_ok=True)
            IdMap.order_file(path / "ids.items.npy").unlink(missing_ok=True)
        for key, (value, files) in own.items():
            given = shared.get(key)
            if given is not None and given[0] is value and all(f.exists() for f in given[1]):
                for source, target in zip(given[1], files, strict=True):
                    link_or_copy(source, target)
                    if key != "seen":  # the id map's sort permutation beside it, if it has one
                        order, stale = IdMap.order_file(source), IdMap.order_file(target)
                        if order.exists():
                            link_or_copy(order, stale)
                        else:
                            stale.unlink(missing_ok=True)
            elif key == "seen":
                save_binary_csr(path, "seen", self._seen)
            else:
                value.save(files[0])
        if self._liked is not None:
            save_binary_csr(path, "liked", self._liked)
        else:
            for stale in binary_csr_files(path, "liked"):
                stale.unlink(missing_ok=True)
        arrays: dict[str, np.ndarray] = {"popularity": self._base_popularity()}
        arrays.update({f"state.{key}": value for key, value in self._state().items()})
        save_arrays(path / STATE_FILE, arrays)
        self._save_files(path)

    def _save_files(self, path: Path) -> None:
        """Write what does not fit the npz (a booster as text, sub-models) into ``path``."""
        return None

    def _load_files(self, path: Path) -> None:
        """Read back what :meth:`_save_files` wrote (after :meth:`_set_state`)."""
        return None

    @classmethod
    def load(cls, path: str | os.PathLike, *, shared: SharedFiles | None = None) -> Retriever:
        """Rebuild a saved model; the class comes from the registry by the saved name.

        The history arrays are memory-mapped read-only. ``shared``: objects
        already loaded with their files (see :meth:`save`); where the model's
        file is the same file (a hard link), the object is used instead of
        loading it again. Models saved before the ``.npy`` files (format 1)
        load too, read into memory.
        """
        path = Path(path)
        model, manifest = open_saved(
            Retriever, cls, path / CONFIG_FILE, "model", FORMAT_VERSION, also_reads=ALSO_READS
        )
        arrays = load_arrays(path / STATE_FILE)
        shape = (int(manifest["n_users"]), int(manifest["n_items"]))
        if manifest["format_version"] == 1:
            model._load_npz_history(arrays, shape)
        else:
            shared = shared or {}

            def reuse(key: str, files: list[Path]) -> Any:
                given = shared.get(key)
                if given is not None and all(
                    same_file(a, b) for a, b in zip(given[1], files, strict=True)
                ):
                    return given[0]
                return None

            users = reuse("users", [path / "ids.users.npy"])
            if users is None:
                users = IdMap.load(path / "ids.users.npy")
            items = users
            if (path / "ids.items.npy").exists():
                items = reuse("items", [path / "ids.items.npy"])
                if items is None:
                    items = IdMap.load(path / "ids.items.npy")
            if (len(users), len(items)) != shape:
                raise InputError(f"{path}: the saved id maps do not match the model's shape")
            model.users, model.items = users, items
            model._seen = reuse("seen", binary_csr_files(path, "seen"))
            if model._seen is None:
                model._seen = load_binary_csr(path, "seen", shape)
            if model._seen.shape != shape:
                raise InputError(f"{path}: the saved seen matrix is not {shape}")
            if binary_csr_files(path, "liked")[0].exists():
                model._liked = load_binary_csr(path, "liked", shape)
        model._popularity = arrays.get("popularity")
        model.graph_kind = manifest.get("graph_kind")
        model._set_state(
            {k[len("state.") :]: v for k, v in arrays.items() if k.startswith("state.")}
        )
        model._load_files(path)
        model._warm_up_request_kernels()
        return model

    def _warm_up_request_kernels(self) -> None:
        """Compile (or read from numba's cache) the kernels this model's requests run, at
        load rather than in the first request; none by default, so that loading a model
        whose requests run no kernel loads no numba."""
        return None

    def _load_npz_history(self, arrays: Mapping[str, np.ndarray], shape: tuple[int, int]) -> None:
        """Seen, liked and the id maps of a model saved in format 1 (all in ``state.npz``)."""
        users = IdMap.from_array(arrays["ids.users"])
        items = IdMap.from_array(arrays["ids.items"]) if "ids.items" in arrays else users
        # binary: saved without .data, read as ones
        self._seen = csr_from_arrays(arrays, "seen", shape)
        self.users, self.items = users, items
        if "liked.indptr" in arrays:
            self._liked = csr_from_arrays(arrays, "liked", shape)


def _positive_counts(train: Interactions) -> np.ndarray:
    """Per target, the users who had it other than by disliking it (both ends for friendships):
    the column counts of the binary matrix, counted without a transposed copy."""
    matrix = train.positives().csr("binary")
    return np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float32)


def ranked_row(row: np.ndarray, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of one score row, leaving out ``item`` itself and ``-inf`` entries."""
    row = np.asarray(row, dtype=np.float32).reshape(1, -1).copy()
    row[0, item] = -np.inf
    ids, scores = top_k(row, k)
    valid = ids[0] >= 0
    return ids[0][valid], scores[0][valid]
